"""Checks that take a benchmark's machinery: the GPU data path against the CPU's (`decode`), kill
and resume (`fault_soak`), the cost of the beton integrity checks (`beton_check`)."""
