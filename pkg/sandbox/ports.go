package sandbox

import (
	"fmt"
	"net"
)

// Ports are the TCP ports (on 127.0.0.1) of one sandbox.
type Ports struct {
	EtcdClient        int `json:"etcdClient"`
	EtcdPeer          int `json:"etcdPeer"`
	APIServer         int `json:"apiServer"`
	ControllerManager int `json:"controllerManager"`
	Scheduler         int `json:"scheduler"`
	// Kubelet is kwok's kubelet server (container logs), the
	// kubeletEndpoint of every kwok node.
	Kubelet int `json:"kubelet"`
	// MetricsServer is metrics-server's secure port, the resource
	// metrics API's backend.
	MetricsServer int `json:"metricsServer"`
}

// pickPorts asks the kernel for n distinct free ports on 127.0.0.1. All
// listeners stay open until every port is chosen, so the ports differ;
// another process may still take one before it is used, which the caller
// detects when a component fails to start.
func pickPorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func pickSandboxPorts() (Ports, error) {
	p, err := pickPorts(7)
	if err != nil {
		return Ports{}, err
	}
	return Ports{EtcdClient: p[0], EtcdPeer: p[1], APIServer: p[2], ControllerManager: p[3], Scheduler: p[4], Kubelet: p[5], MetricsServer: p[6]}, nil
}
