"""`python -m inference_farm` runs the CLI."""

from inference_farm.cli import main

if __name__ == "__main__":
    main()
