package events

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// validateEnum reports v when it is not one of all; empty is "required".
func validateEnum[T ~string](field string, v T, all []T) error {
	if v == "" {
		return fieldErr(field, "required", enumStrings(all)...)
	}
	for _, a := range all {
		if a == v {
			return nil
		}
	}
	return fieldErr(field, fmt.Sprintf("unknown value %q", string(v)), enumStrings(all)...)
}

// validateOptionalEnum is validateEnum that accepts "".
func validateOptionalEnum[T ~string](field string, v T, all []T) error {
	if v == "" {
		return nil
	}
	return validateEnum(field, v, all)
}

func enumStrings[T ~string](all []T) []string {
	out := make([]string, len(all))
	for i, a := range all {
		out[i] = string(a)
	}
	return out
}

// validateUUID checks a required canonical (36 character, lower case) UUID.
func validateUUID(field, s string) error {
	if s == "" {
		return required(field)
	}
	u, err := uuid.Parse(s)
	if err != nil || u.String() != s {
		return fieldErr(field, fmt.Sprintf("%q is not a canonical lower-case UUID", s))
	}
	return nil
}

// validateOptionalUUID is validateUUID that accepts "".
func validateOptionalUUID(field, s string) error {
	if s == "" {
		return nil
	}
	return validateUUID(field, s)
}

// validateTime checks a required timestamp.
func validateTime(field string, t time.Time) error {
	if t.IsZero() {
		return required(field)
	}
	return nil
}

// validateNotBefore checks that a set later is not before earlier.
func validateNotBefore(field string, later time.Time, earlierField string, earlier time.Time) error {
	if !later.IsZero() && !earlier.IsZero() && later.Before(earlier) {
		return fieldErr(field, "is before "+earlierField)
	}
	return nil
}

func validateNonNegative[N ~int | ~int32 | ~int64](field string, n N) error {
	if n < 0 {
		return fieldErr(field, "must not be negative")
	}
	return nil
}

func validateMaxLen[E any](field string, s []E, max int) error {
	if len(s) > max {
		return fieldErr(field, fmt.Sprintf("has %d items, at most %d allowed", len(s), max))
	}
	return nil
}
