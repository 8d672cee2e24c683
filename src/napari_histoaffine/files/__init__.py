"""File formats: images and pyramids, tiles, landmark and pair tables, transform files, atomic writes."""
