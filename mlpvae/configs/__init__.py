"""Example TOML configs for `vaetheory train --config` (a package only so that wheels ship them)."""
