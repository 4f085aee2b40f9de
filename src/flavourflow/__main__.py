from flavourflow.cli import main

raise SystemExit(main())
