"""Result documents: atomic store, resume, summary (read and checked by `kit.documents`)."""
