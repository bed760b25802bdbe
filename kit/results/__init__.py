"""Result documents: schema validation, atomic store, resume, summary."""
