package events

import "time"

// Pause is the global kill switch of one cluster's remediation, stored in
// BucketControl under PauseKey. While Paused, the executor refuses every
// approval (refusal reason paused); executions already running finish.
// The switch is reachable from config (remediation.paused, which pauses
// whatever the key says), from MCP and from the bus.
type Pause struct {
	Paused bool `json:"paused"`
	// By is who flipped the switch and Via through which channel.
	By  string `json:"by"`
	Via Via    `json:"via"`
	// Reason is free text for the people who find remediation paused.
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Validate requires who, how and when.
func (p Pause) Validate() error {
	return firstErr(
		requiredString("by", p.By),
		p.Via.Validate(),
		validateTime("at", p.At),
	)
}

// PauseKey is the BucketControl key of a cluster's kill switch:
// "<cluster>.paused".
func PauseKey(cluster string) (string, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return "", err
	}
	return cluster + ".paused", nil
}
