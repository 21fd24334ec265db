import sys

from console.bench.suite import main

sys.exit(main())
