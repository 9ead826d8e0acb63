"""Predicted wall time and device-hours: of one recipe (`recipe`), of a whole plan (`study`)."""
