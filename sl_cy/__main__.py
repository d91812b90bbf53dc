import sys

from sl_cy.cli import main

sys.exit(main())
