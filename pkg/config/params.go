package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The parameters a strategy entry may give its catalogue step
// ({action: increase_memory, params: {factor: "2"}}), each with its
// check. The planner reads exactly these (services/planner: memoryBounds,
// the warning's forecast horizon, setImage, tolerationsToAdd, the
// request change and setNodeSelector); a step not listed takes none. A
// value that fails its check is refused here, where the person reads the
// error, instead of being ignored by the planner for the default.
var stepParams = map[string]map[string]func(string) error{
	"increase_memory":       memoryParams,
	"set_memory_limit":      memoryParams,
	"lower_requests":        requestParams,
	"set_resource_requests": requestParams,
	"set_image":             imageParams,
	"update_image":          imageParams,
	"add_toleration": {
		"key":      checkQualifiedName,
		"value":    checkLabelValue,
		"operator": enumCheck("Equal", "Exists"),
		"effect":   enumCheck("NoSchedule", "PreferNoSchedule", "NoExecute"),
	},
	// set_node_selector takes the selector itself: any label keys.
}

// Bounds of the parameters.
const (
	minGrowthHorizon = time.Minute
	// maxGrowthHorizon: a memory trend projected further than a month
	// says little about a limit to set today.
	maxGrowthHorizon = 30 * 24 * time.Hour
	maxImageRef      = 512
)

var (
	memoryParams = map[string]func(string) error{
		"factor": func(v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 1 || f > maxMemoryFactor {
				return fmt.Errorf("%q must be a number greater than 1 and at most %g", v, maxMemoryFactor)
			}
			return nil
		},
		"max": func(v string) error {
			_, err := ParseQuantityBytes(v)
			return err
		},
		// horizon: how far a MemoryNearLimit warning's growth is projected.
		"horizon": func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < minGrowthHorizon || d > maxGrowthHorizon {
				return fmt.Errorf("%q must be a duration between %s and %s, such as 24h", v, minGrowthHorizon, maxGrowthHorizon)
			}
			return nil
		},
	}
	requestParams = map[string]func(string) error{
		"cpu": func(v string) error {
			q, err := resource.ParseQuantity(v)
			if err != nil || q.Sign() <= 0 {
				return fmt.Errorf("%q must be a cpu quantity above zero, such as 250m or 1", v)
			}
			return nil
		},
		"memory": func(v string) error {
			_, err := ParseQuantityBytes(v)
			return err
		},
	}
	imageParams = map[string]func(string) error{
		"image": func(v string) error {
			if v == "" || len(v) > maxImageRef || strings.ContainsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
				return fmt.Errorf("%q must be an image reference such as redis:7.2 (at most %d characters, no spaces)", v, maxImageRef)
			}
			return nil
		},
	}
)

func enumCheck(allowed ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
		}
		return nil
	}
}

func checkQualifiedName(v string) error {
	if errs := validation.IsQualifiedName(v); len(errs) > 0 {
		return fmt.Errorf("%q is not a label key: %s", v, strings.Join(errs, "; "))
	}
	return nil
}

func checkLabelValue(v string) error {
	if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
		return fmt.Errorf("%q is not a label value: %s", v, strings.Join(errs, "; "))
	}
	return nil
}

// validateParams checks the params of one strategy entry (key names it).
func validateParams(p *problems, key string, s Strategy) {
	if len(s.Params) == 0 {
		return
	}
	pkey := key + ".params"
	if s.Action == "set_node_selector" {
		for _, k := range slices.Sorted(maps.Keys(s.Params)) {
			if err := checkQualifiedName(k); err != nil {
				p.add(fieldErr(pkey, err.Error()))
			} else if err := checkLabelValue(s.Params[k]); err != nil {
				p.add(fieldErr(pkey+"."+k, err.Error()))
			}
		}
		return
	}
	checks, ok := stepParams[s.Action]
	if !ok {
		p.add(fieldErr(pkey, fmt.Sprintf("%s takes no params", s.Action)))
		return
	}
	allowed := slices.Sorted(maps.Keys(checks))
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		check, ok := checks[k]
		if !ok {
			p.add(fieldErr(pkey+"."+k, fmt.Sprintf("%s takes no param %q", s.Action, k), allowed...))
			continue
		}
		if err := check(s.Params[k]); err != nil {
			p.add(fieldErr(pkey+"."+k, err.Error()))
		}
	}
	if s.Action == "add_toleration" {
		// The API server's own rules for a toleration (the planner
		// defaults the operator to Exists without a value, else Equal).
		if s.Params["key"] == "" {
			p.add(fieldErr(pkey+".key", "add_toleration's params need the taint's key"))
		}
		if s.Params["operator"] == "Exists" && s.Params["value"] != "" {
			p.add(fieldErr(pkey+".value", "must be empty with operator Exists"))
		}
	}
}
