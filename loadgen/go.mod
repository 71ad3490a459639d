module github.com/kubeattention/kubeattention/loadgen

go 1.19
