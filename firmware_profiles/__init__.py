"""Camera-family data files (TOML), one per family; validated by `fleet.profiles`."""
