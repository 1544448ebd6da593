package svcmain

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/config"
)

func TestCgroupMemoryLimit(t *testing.T) {
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if v, ok := m[p]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	cases := []struct {
		name string
		fs   map[string]string
		want int64
	}{
		{"v2 limit", map[string]string{"/sys/fs/cgroup/memory.max": "536870912\n"}, 512 << 20},
		{"v2 no limit", map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, 0},
		{"v1 limit", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "268435456\n"}, 256 << 20},
		{"v1 no limit", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"no cgroup", nil, 0},
	}
	for _, tc := range cases {
		if got := cgroupMemoryLimit(files(tc.fs)); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := cgroupMemoryLimit(func(string) ([]byte, error) { return nil, errors.New("denied") }); got != 0 {
		t.Errorf("unreadable: %d", got)
	}
}

func TestSoftMemoryLimit(t *testing.T) {
	cases := []struct {
		setting   string
		container int64
		want      int64
	}{
		{config.MemoryLimitAuto, 512 << 20, 512 << 20 / 100 * 90},
		{config.MemoryLimitAuto, 0, 0},
		{config.MemoryLimitOff, 512 << 20, 0},
		{"96Mi", 0, 96 << 20},
		{"96Mi", 512 << 20, 96 << 20},
	}
	for _, tc := range cases {
		if got := (config.Server{MemoryLimit: tc.setting}).SoftMemoryLimit(tc.container); got != tc.want {
			t.Errorf("%s in a container of %d: %d, want %d", tc.setting, tc.container, got, tc.want)
		}
	}
	for _, bad := range []string{"lots", "16Mi", "-1Gi"} {
		_, err := config.Load(strings.NewReader(""), []string{"KAAR_SERVER_MEMORY_LIMIT=" + bad})
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Key != "server.memory_limit" {
			t.Errorf("server.memory_limit %q: %v, want an error naming the key", bad, err)
		}
	}
	if cfg, err := config.Load(strings.NewReader(""), []string{"KAAR_SERVER_MEMORY_LIMIT=120Mi"}); err != nil || cfg.Server.MemoryLimit != "120Mi" {
		t.Errorf("120Mi: %v %v", cfg.Server.MemoryLimit, err)
	}
}
