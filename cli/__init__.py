"""The `axis` command (`cli.main`)."""


def main() -> None:
    """The console script's entry point. It imports `cli.main` only when called: `axis serve`'s spawned children
    run the console script again as their `__main__` without calling it, and so do not pay for every command's
    imports."""
    from cli.main import main as run

    run()
