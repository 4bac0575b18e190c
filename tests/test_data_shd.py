"""SHD reader (docs/design.md §5): layout, values, and a clear error for every kind of bad file."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from elm_neuro.data.shd import CLASS_NAMES, SHDFormatError, read_shd
from test_data_helpers import write_fake_shd


def _good(tmp_path, name="shd.h5"):
    times = [
        [0.5, 0.1, 0.3],          # unsorted
        [],                        # empty samples are legal
        [0.0, 1.25, 0.002],
        [0.7],
    ]
    units = [[3, 699, 0], [], [10, 11, 12], [5]]
    labels = [0, 19, 7, 12]
    speakers = [1, 0, 1, 0]
    return write_fake_shd(tmp_path / name, times, units, labels, speakers), times, units


def test_reads_layout_into_flat_arrays(tmp_path):
    path, times, units = _good(tmp_path)
    ev = read_shd(path)
    assert len(ev) == 4 and ev.n_samples == 4
    np.testing.assert_array_equal(ev.offsets, [0, 3, 3, 6, 7])
    assert ev.offsets.dtype == np.int64
    assert ev.times.dtype == np.float64
    expected_t = np.concatenate([np.asarray(t, np.float16).astype(np.float64) for t in times])
    np.testing.assert_array_equal(ev.times, expected_t)  # float16 values, exactly, unsorted kept
    np.testing.assert_array_equal(ev.units, [3, 699, 0, 10, 11, 12, 5])
    np.testing.assert_array_equal(ev.labels, [0, 19, 7, 12])
    np.testing.assert_array_equal(ev.speakers, [1, 0, 1, 0])
    assert ev.keys == CLASS_NAMES
    assert ev.path == str(path)
    assert set(ev.meta_info) == {"gender", "age", "body_height"}
    np.testing.assert_array_equal(ev.counts, [3, 0, 3, 1])
    t2, u2 = ev.sample(2)
    np.testing.assert_array_equal(u2, [10, 11, 12])
    assert ev.sample(-1)[1].tolist() == [5]
    np.testing.assert_array_equal(ev.durations(), np.float16([0.5, 0, 1.25, 0.7]).astype(float))


def test_subset_copies_selected_samples_in_order(tmp_path):
    ev = read_shd(_good(tmp_path)[0])
    sub = ev.subset([3, 1, 0, 3])
    np.testing.assert_array_equal(sub.offsets, [0, 1, 1, 4, 5])
    np.testing.assert_array_equal(sub.units, [5, 3, 699, 0, 5])
    np.testing.assert_array_equal(sub.labels, [12, 19, 0, 12])


def test_speaker_optional(tmp_path):
    p = write_fake_shd(tmp_path / "a.h5", [[0.1]], [[1]], [3], speakers=None)
    ev = read_shd(p)
    np.testing.assert_array_equal(ev.speakers, [-1])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        read_shd(tmp_path / "nope.h5")


@pytest.mark.parametrize("key", ["spikes/times", "spikes/units", "labels"])
def test_missing_key(tmp_path, key):
    p = write_fake_shd(tmp_path / "m.h5", [[0.1]], [[1]], [3], [0], skip=(key,))
    with pytest.raises(SHDFormatError, match=rf"m\.h5.*missing dataset\(s\) {key}"):
        read_shd(p)


def test_dataset_lengths_disagree(tmp_path):
    p = write_fake_shd(tmp_path / "l.h5", [[0.1], [0.2]], [[1], [2]], [3], [0])
    with pytest.raises(SHDFormatError, match=r"l\.h5: lengths disagree.*labels 1"):
        read_shd(p)
    p = write_fake_shd(tmp_path / "l2.h5", [[0.1], [0.2]], [[1]], [3, 4], [0, 0])
    with pytest.raises(SHDFormatError, match=r"l2\.h5: lengths disagree.*spikes/units 1"):
        read_shd(p)
    p = write_fake_shd(tmp_path / "l3.h5", [[0.1], [0.2]], [[1], [2]], [3, 4], [0, 0, 1])
    with pytest.raises(SHDFormatError, match=r"l3\.h5: extra/speaker has shape"):
        read_shd(p)


def test_ragged_lengths_disagree_within_sample(tmp_path):
    p = write_fake_shd(tmp_path / "r.h5", [[0.1], [0.2, 0.3], [0.1, 0.2]],
                       [[1], [2, 3], [4]], [3, 4, 5], [0, 0, 0])
    with pytest.raises(SHDFormatError, match=r"r\.h5: sample 2 has 2 spike times but 1 spike"):
        read_shd(p)


def test_units_out_of_range(tmp_path):
    p = write_fake_shd(tmp_path / "u.h5", [[0.1], [0.2, 0.3], [0.1]],
                       [[1], [2, 700], [701]], [3, 4, 5], [0, 0, 0])
    with pytest.raises(SHDFormatError, match=r"u\.h5: sample 1 has spike unit 700; expected "
                                             r"units 0\.\.699"):
        read_shd(p)
    # signed unit datasets can hold negative units
    p = write_fake_shd(tmp_path / "neg.h5", [[0.1], [0.2]], [[1], [-1]], [3, 4], [0, 0],
                       units_dtype=np.int16)
    with pytest.raises(SHDFormatError, match=r"neg\.h5: sample 1 has spike unit -1"):
        read_shd(p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.5])
def test_bad_times(tmp_path, bad):
    p = write_fake_shd(tmp_path / "t.h5", [[0.1], [0.2], [0.3, bad]],
                       [[1], [2], [3, 4]], [3, 4, 5], [0, 0, 0])
    with pytest.raises(SHDFormatError, match=r"t\.h5: sample 2 has spike time .*finite times"):
        read_shd(p)


def test_labels_out_of_range_and_label_range_parameter(tmp_path):
    p = write_fake_shd(tmp_path / "lab.h5", [[0.1], [0.2], [0.3]], [[1], [2], [3]],
                       [3, 20, 25], [0, 0, 0])
    with pytest.raises(SHDFormatError, match=r"lab\.h5: sample 1 has label 20; expected "
                                             r"labels 0\.\.19"):
        read_shd(p)
    p = write_fake_shd(tmp_path / "sum.h5", [[0.1], [0.2]], [[1], [2]], [18, 0], [0, 0])
    assert read_shd(p, n_classes=19).labels.tolist() == [18, 0]
    with pytest.raises(SHDFormatError, match=r"sample 0 has label 18; expected labels 0\.\.9"):
        read_shd(p, n_classes=10)


def test_not_hdf5(tmp_path):
    p = tmp_path / "text.h5"
    p.write_text("this is not an HDF5 file\n")
    with pytest.raises(SHDFormatError, match=r"text\.h5: not an HDF5 file \(it does not start with the HDF5 "):
        read_shd(p)
    p.write_bytes(b"")
    with pytest.raises(SHDFormatError, match=r"text\.h5 is empty \(0 bytes\)"):
        read_shd(p)


def test_truncated_hdf5(tmp_path):
    rng = np.random.default_rng(0)
    times = [rng.random(2000) for _ in range(20)]
    units = [rng.integers(0, 700, 2000) for _ in range(20)]
    p = write_fake_shd(tmp_path / "full.h5", times, units, np.arange(20) % 20, np.zeros(20))
    data = p.read_bytes()
    for frac in (0.5, 0.9):
        q = tmp_path / f"trunc{frac}.h5"
        q.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(SHDFormatError, match=rf"trunc{frac}\.h5: a truncated or corrupt HDF5 file"):
            read_shd(q)


def test_non_ragged_spikes_rejected(tmp_path):
    p = tmp_path / "flat.h5"
    with h5py.File(p, "w") as f:
        f["spikes/times"] = np.zeros((2, 3), np.float16)
        f["spikes/units"] = np.zeros((2, 3), np.uint16)
        f["labels"] = np.zeros(2, np.uint8)
    with pytest.raises(SHDFormatError, match=r"flat\.h5: 'spikes/times'.*variable-length"):
        read_shd(p)
