"""Numbered SQL migrations (``NNNN_name.sql``), applied in order by
``tradepulse.adapters.postgres.migrate``. A package so that the files ship in the wheel and
are found with ``importlib.resources``."""
