from thoth.audit.cli import main

raise SystemExit(main())
