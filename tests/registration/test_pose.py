import pytest

from napari_histoaffine.registration.pose import fft_length


def _fast(length: int) -> bool:
    while length % 2 == 0:
        length //= 2
    return length in (1, 3)


@pytest.mark.parametrize("needed", [1, 2, 3, 5, 9, 31, 33, 45, 48, 49, 61, 65, 97, 121, 500])
def test_search_ffts_are_padded_to_the_smallest_fast_length_that_holds_them(needed):
    length = fft_length(needed)
    assert length >= needed and _fast(length)
    assert not any(_fast(shorter) for shorter in range(needed, length))
