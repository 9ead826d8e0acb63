"""The images and betons the benchmarks read: an ImageFolder and its beton (`image_folder`), real
photos (`real_photos`), synthetic ones (`synthetic_beton`), a beton's stored JPEG bytes (`stored_jpegs`)."""
