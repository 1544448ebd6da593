package events

import (
	"errors"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every validation error of this
// package, so callers can tell bad input from transport failures.
var ErrInvalid = errors.New("events: invalid")

// ValidationError tells which field is wrong and why. Field is a JSON path
// ("data.steps[1].patch"); Allowed lists the accepted values when the field
// is an enum.
type ValidationError struct {
	Field   string
	Problem string
	Allowed []string
}

// Error renders `events: field "data.plan_id": required`, followed by the
// allowed values when there are some.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("events: field ")
	b.WriteString(`"` + e.Field + `"`)
	b.WriteString(": ")
	b.WriteString(e.Problem)
	if len(e.Allowed) > 0 {
		b.WriteString(" (allowed: ")
		b.WriteString(strings.Join(e.Allowed, ", "))
		b.WriteString(")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true for every ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// fieldErr builds a ValidationError.
func fieldErr(field, problem string, allowed ...string) error {
	return &ValidationError{Field: field, Problem: problem, Allowed: allowed}
}

// required reports a missing field.
func required(field string) error { return fieldErr(field, "required") }

// under prefixes the field path of a ValidationError with prefix, so nested
// validators can report full JSON paths. Other errors pass through.
func under(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	out := *ve
	switch {
	case out.Field == "":
		out.Field = prefix
	case strings.HasPrefix(out.Field, "["):
		out.Field = prefix + out.Field
	default:
		out.Field = prefix + "." + out.Field
	}
	return &out
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
