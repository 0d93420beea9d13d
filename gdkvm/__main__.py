"""``python -m gdkvm``: the same CLI as the ``gdkvm`` command, for checkouts that are not pip-installed
(e.g. ``PYTHONPATH=. python3 -m gdkvm bench fps`` on a machine whose torch must not be replaced)."""

from gdkvm.cli.main import run

if __name__ == "__main__":
    run()
