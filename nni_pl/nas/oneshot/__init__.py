"""One-shot NAS: one supernet holds every architecture of a model space; a strategy trains it and reads the
architecture off it (DARTS, GumbelDARTS, ENAS, RandomOneShot/SPOS, Proxyless)."""
