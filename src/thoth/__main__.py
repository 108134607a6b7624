from thoth.cli import main

raise SystemExit(main())
