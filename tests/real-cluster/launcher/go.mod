module tether.dev/tests/real-cluster/launcher

go 1.24.0
