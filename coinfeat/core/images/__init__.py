"""Photos in: decoding, the coin crop, circle detection, augmented views and annotated photos."""
