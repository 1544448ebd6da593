package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseMetricsReadsUnlabelledSamples(t *testing.T) {
	text := `# HELP go_memstats_sys_bytes Number of bytes obtained from system.
# TYPE go_memstats_sys_bytes gauge
go_memstats_sys_bytes 8.4e+07
go_memstats_heap_released_bytes 4.194304e+06
go_gc_gomemlimit_bytes 9.223372036854776e+18
go_gc_duration_seconds{quantile="0.5"} 0.0001
go_goroutines 42
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_memstats_sys_bytes"] != 84e6 || m["go_memstats_heap_released_bytes"] != 4194304 || m["go_goroutines"] != 42 {
		t.Errorf("parsed %v", m)
	}
	if _, ok := m["go_gc_duration_seconds"]; ok {
		t.Errorf("a labelled sample was read as unlabelled: %v", m)
	}
}

func TestBenchClassifyIsTheDefaultsWithoutPendingGrace(t *testing.T) {
	o, err := benchClassify("bench", "auto")
	if err != nil {
		t.Fatal(err)
	}
	if o.PendingGrace != 0 || o.RestartThreshold != 1 || o.NotReadyAfter != 10*time.Minute {
		t.Errorf("classify options %+v: want kaar's defaults with pending_grace 0", o)
	}
}
