"""Operating the index: commands, reports, metrics, bundles, verification."""
