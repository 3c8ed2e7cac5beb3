"""Board profiles, one TOML file per board, installed as ``hwgen.boards``; read them with
:func:`hwgen.board.load_boards`."""
