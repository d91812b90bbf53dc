from sl_cy._version import __version__
