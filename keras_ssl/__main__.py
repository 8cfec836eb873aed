"""`python -m keras_ssl` is the `keras-ssl` command."""

import sys

from keras_ssl.cli import main

sys.exit(main())
