package events

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A warning's evidence: what an Incident of class warning rests on, in
// numbers a person can check ("memory_working_set 412Mi of 512Mi, growing
// 40Mi an hour over the last 2h, crosses the limit at 17:40, R² 0.97").

// MaxMeasurements bounds WarningEvidence.Measurements.
const MaxMeasurements = 8

// Units of a Measurement or Forecast.
const (
	UnitBytes   = "bytes"
	UnitCores   = "cores"
	UnitCount   = "count"
	UnitPercent = "percent"
	UnitSeconds = "seconds"
)

// Units lists the allowed units.
func Units() []string { return []string{UnitBytes, UnitCores, UnitCount, UnitPercent, UnitSeconds} }

// measurementNameRE is a metric name: lower snake_case words, dots allowed
// for Kubernetes resource names ("requests.memory").
var measurementNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_./-]{0,62}$`)

// WarningEvidence is a warning's numbers.
type WarningEvidence struct {
	// Measurements are the figures the warning rests on, the decisive one
	// first (quota used against hard, requested against allocatable,
	// restarts in the window).
	Measurements []Measurement `json:"measurements,omitempty"`
	// Forecast is the projection of a trend (MemoryNearLimit).
	Forecast *Forecast `json:"forecast,omitempty"`
}

// Measurement is one figure: a value, and the limit it is measured
// against when there is one.
type Measurement struct {
	// Name says what was measured: "memory_working_set",
	// "requests.memory" (a quota's resource), "cpu_requested",
	// "restarts".
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Limit is what Value is compared with (0: none).
	Limit float64 `json:"limit,omitempty"`
	// Unit is one of Units().
	Unit string `json:"unit"`
	// WindowSeconds is the period the value covers (0: an instant).
	WindowSeconds int64 `json:"window_seconds,omitempty"`
}

// Percent is Value as a percentage of Limit (0 without a limit).
func (m Measurement) Percent() float64 {
	if m.Limit <= 0 {
		return 0
	}
	return 100 * m.Value / m.Limit
}

// Forecast is a straight-line fit over a window of samples, projected to
// the limit.
type Forecast struct {
	// Metric is what was sampled ("memory_working_set").
	Metric string `json:"metric"`
	Unit   string `json:"unit"`
	// Current is the fitted value at the last sample; Limit the value it
	// is projected to reach.
	Current float64 `json:"current"`
	Limit   float64 `json:"limit"`
	// SlopePerHour is the fitted growth per hour.
	SlopePerHour float64 `json:"slope_per_hour"`
	// CrossesAt is when the fit reaches Limit.
	CrossesAt time.Time `json:"crosses_at"`
	// Confidence is how well a line explains the samples (the fit's R²,
	// 0 to 1).
	Confidence float64 `json:"confidence"`
	// WindowSeconds is the span of the samples; Samples their number.
	WindowSeconds int64 `json:"window_seconds"`
	Samples       int   `json:"samples"`
}

func validateWarningEvidence(in Incident) error {
	if in.Warning == nil {
		return nil
	}
	if !in.Type.IsWarning() {
		return fieldErr("warning", fmt.Sprintf("only incidents of class warning carry warning evidence, and %s is of class %s", in.Type, in.Type.Class()))
	}
	return under("warning", in.Warning.Validate())
}

// Validate checks the names, units and numbers.
func (w WarningEvidence) Validate() error {
	if err := validateMaxLen("measurements", w.Measurements, MaxMeasurements); err != nil {
		return err
	}
	for i, m := range w.Measurements {
		if err := under(fmt.Sprintf("measurements[%d]", i), m.Validate()); err != nil {
			return err
		}
	}
	if w.Forecast != nil {
		return under("forecast", w.Forecast.Validate())
	}
	return nil
}

// Validate checks a measurement.
func (m Measurement) Validate() error {
	return firstErr(
		validateMetricName("name", m.Name),
		validateUnit("unit", m.Unit),
		validateFinite("value", m.Value),
		validateFinite("limit", m.Limit),
		validateNonNegative("window_seconds", m.WindowSeconds),
	)
}

// Validate checks a forecast.
func (f Forecast) Validate() error {
	err := firstErr(
		validateMetricName("metric", f.Metric),
		validateUnit("unit", f.Unit),
		validateFinite("current", f.Current),
		validateFinite("limit", f.Limit),
		validateFinite("slope_per_hour", f.SlopePerHour),
		validateTime("crosses_at", f.CrossesAt),
		validateFinite("confidence", f.Confidence),
		validateNonNegative("window_seconds", f.WindowSeconds),
		validateNonNegative("samples", f.Samples),
	)
	if err != nil {
		return err
	}
	if f.Confidence < 0 || f.Confidence > 1 {
		return fieldErr("confidence", fmt.Sprintf("%g is not between 0 and 1", f.Confidence))
	}
	return nil
}

func validateMetricName(field, s string) error {
	if s == "" {
		return required(field)
	}
	if !measurementNameRE.MatchString(s) {
		return fieldErr(field, fmt.Sprintf("%q is not a metric name (%s)", s, measurementNameRE.String()))
	}
	return nil
}

func validateUnit(field, s string) error { return validateEnum(field, s, Units()) }

func validateFinite(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fieldErr(field, "must be a finite number")
	}
	return nil
}

// Summary says the evidence in one line of numbers, for people: "requests.memory 3.7Gi of 4Gi
// (92%); memory_working_set 412Mi of 512Mi, +40Mi/h over 2h (120 samples), reaches the limit
// at 2026-12-06 17:40 UTC (R² 0.97)". It holds no cluster text (names are
// metric names, validated).
func (w *WarningEvidence) Summary() string {
	if w == nil {
		return ""
	}
	var parts []string
	for _, m := range w.Measurements {
		s := m.Name + " " + FormatAmount(m.Value, m.Unit)
		if m.Limit > 0 {
			s += fmt.Sprintf(" of %s (%.0f%%)", FormatAmount(m.Limit, m.Unit), m.Percent())
		}
		if m.WindowSeconds > 0 {
			s += " over " + formatSeconds(m.WindowSeconds)
		}
		parts = append(parts, s)
	}
	if f := w.Forecast; f != nil {
		parts = append(parts, fmt.Sprintf("%s %s of %s, %s%s/h over %s (%d samples), reaches the limit at %s (R² %.2f)",
			f.Metric, FormatAmount(f.Current, f.Unit), FormatAmount(f.Limit, f.Unit), sign(f.SlopePerHour),
			FormatAmount(math.Abs(f.SlopePerHour), f.Unit), formatSeconds(f.WindowSeconds), f.Samples,
			f.CrossesAt.UTC().Format("2006-01-02 15:04 UTC"), f.Confidence))
	}
	return strings.Join(parts, "; ")
}

func sign(v float64) string {
	if v < 0 {
		return "-"
	}
	return "+"
}

// FormatAmount writes a value in its unit the way kubectl would: bytes
// in binary units (512Mi), cores in millicores below one (250m), counts
// as integers, percentages with a percent sign, seconds as a duration.
func FormatAmount(v float64, unit string) string {
	switch unit {
	case UnitBytes:
		for _, u := range []struct {
			s string
			n float64
		}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
			if math.Abs(v) >= u.n {
				return trimFloat(v/u.n) + u.s
			}
		}
		return trimFloat(v)
	case UnitCores:
		if math.Abs(v) < 1 {
			return fmt.Sprintf("%.0fm", v*1000)
		}
		return trimFloat(v)
	case UnitPercent:
		return trimFloat(v) + "%"
	case UnitSeconds:
		return formatSeconds(int64(v))
	}
	return trimFloat(v)
}

// trimFloat prints at most one decimal, none when it is zero.
func trimFloat(v float64) string {
	s := strconv.FormatFloat(math.Round(v*10)/10, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0")
}

func formatSeconds(s int64) string {
	d := time.Duration(s) * time.Second
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
