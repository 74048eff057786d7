package model

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

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

func TestSpanPool(t *testing.T) {
	s := NewSpan()
	h := s.UseHTTP()
	h.Path = "/a"
	s.Attributes = append(s.Attributes, attribute.String("url.path", "/a"))
	s.Hold(2)
	s.Release()
	if s.HTTP == nil || s.HTTP.Path != "/a" {
		t.Fatalf("released before its last hold")
	}
	s.Release()
	if s.HTTP != nil || len(s.Attributes) != 0 || cap(s.Attributes) == 0 {
		t.Fatalf("a released span keeps its exchange or loses its attribute slice: %+v", s)
	}
	// A copy of a pooled span is not the pooled span: releasing it does
	// nothing to the original.
	o := NewSpan()
	o.UseDB("redis").Operation = "GET"
	c := *o
	c.Release()
	if o.DB == nil || o.DB.Operation != "GET" {
		t.Fatalf("releasing a copy recycled the original")
	}
	if c.UseHTTP() == o.UseHTTP() {
		t.Fatalf("a copy's exchange is the original's")
	}
}

func TestNewSpanAllocations(t *testing.T) {
	n := testing.AllocsPerRun(1000, func() {
		s := NewSpan()
		s.UseHTTP().Status = 200
		s.Attributes = append(s.Attributes, attribute.Int("http.response.status_code", 200))
		s.Hold(1)
		s.Release()
	})
	if n != 0 {
		t.Errorf("%v allocations per pooled span, want 0", n)
	}
}
