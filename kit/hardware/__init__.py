"""Facts about hardware that the kit did not measure: GPU datasheets and how names match them."""
