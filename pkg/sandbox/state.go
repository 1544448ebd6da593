package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// stateVersion is the schema version of state.json.
const stateVersion = 1

// stateFileName is the state file inside the state directory.
const stateFileName = "state.json"

// State is what state.json records about a running sandbox: enough for
// Status, Down and a later Up to find and manage its processes.
type State struct {
	Version    int            `json:"version"`
	CreatedAt  time.Time      `json:"createdAt"`
	Detached   bool           `json:"detached"`
	Server     string         `json:"server"`
	Kubeconfig string         `json:"kubeconfig"`
	Ports      Ports          `json:"ports"`
	Nodes      int            `json:"nodes"`
	Binaries   Binaries       `json:"binaries"`
	Processes  []ProcessState `json:"processes"`
}

// ProcessState is one control-plane process.
type ProcessState struct {
	Name   string `json:"name"`
	PID    int    `json:"pid"`
	Binary string `json:"binary"`
	Log    string `json:"log"`
}

// readState reads dir/state.json; a missing file is ErrNotRunning.
func readState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no %s in %s", ErrNotRunning, stateFileName, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read state %s: %w", filepath.Join(dir, stateFileName), err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("read state %s: version %d, want %d", filepath.Join(dir, stateFileName), s.Version, stateVersion)
	}
	return &s, nil
}

// writeState writes dir/state.json atomically.
func writeState(dir string, s *State) error {
	s.Version = stateVersion
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	tmp := filepath.Join(dir, stateFileName+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFileName)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
