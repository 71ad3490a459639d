import pytest

from kubeapi.quantity import cpu_cores, memory_bytes


@pytest.mark.parametrize("text,cores", [("500m", 0.5), ("2", 2.0), ("0.25", 0.25), ("100u", 1e-4), ("1k", 1000.0)])
def test_cpu(text, cores):
    assert cpu_cores(text) == pytest.approx(cores)


@pytest.mark.parametrize(
    "text,b", [("512Mi", 512 * 2**20), ("1G", 10**9), ("1.5Gi", 3 * 2**29), ("1e3", 1000), ("0", 0), ("1m", 1)]
)
def test_memory(text, b):
    assert memory_bytes(text) == b


@pytest.mark.parametrize("bad", ["", "abc", "5 Mi", "-1", "1.2.3", "Mi", "1Zi"])
def test_bad_quantities_name_the_field(bad):
    with pytest.raises(ValueError, match="--memory"):
        memory_bytes(bad, "--memory")
