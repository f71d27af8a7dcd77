from facelab.cli import main

raise SystemExit(main())
