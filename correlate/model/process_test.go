package model

import "testing"

func TestProcessResource(t *testing.T) {
	p := NewProcess(5, "/opt/app/bin/orders", "", "go1.26.8")
	m := map[string]any{}
	for _, kv := range p.Resource() {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	if m["service.name"] != "orders" || m["process.pid"] != int64(5) || m["process.runtime.version"] != "go1.26.8" ||
		m["process.executable.name"] != "orders" || m["telemetry.sdk.name"] != "zerotrace" {
		t.Errorf("resource %v", m)
	}
	if NewProcess(5, "/x/orders", "checkout", "go1.26.8").ServiceName != "checkout" {
		t.Errorf("service name override ignored")
	}
}
