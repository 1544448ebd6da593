package planner

import (
	"cmp"
	"fmt"

	"github.com/kaar-dev/kaar/pkg/events"
	networkingv1 "k8s.io/api/networking/v1"
)

// An Ingress whose IngressClass exists but whose controller does not seem
// to run (reason no_controller): no Ingress of the class has an address.
// Diagnostic: installing or repairing an ingress controller, or moving
// the Ingress to another class, is a person's decision.

// ingressNoController is the watcher's reason for it.
const ingressNoController = "no_controller"

// knownIngressControllers say where the usual controllers run, by their
// IngressClass's spec.controller: the namespace and label of their pods
// as their Helm charts install them.
var knownIngressControllers = map[string]struct{ namespace, selector string }{
	"k8s.io/ingress-nginx":           {"ingress-nginx", "app.kubernetes.io/name=ingress-nginx"},
	"traefik.io/ingress-controller":  {"traefik", "app.kubernetes.io/name=traefik"},
	"haproxy.org/ingress-controller": {"haproxy-controller", "app.kubernetes.io/name=kubernetes-ingress"},
}

// ingressClassOf is the IngressClass serving ing among those read: its
// ingressClassName, else the default class (nil when neither exists).
func (t *ingressRead) ingressClassOf(ing *networkingv1.Ingress) *networkingv1.IngressClass {
	name := derefOr(ing.Spec.IngressClassName, "")
	for i, c := range t.Classes {
		if c.Name == name || name == "" && c.Annotations[annotationDefaultIngressClass] == "true" {
			return &t.Classes[i]
		}
	}
	return nil
}

// ingressAddresses spells an Ingress's published addresses ("none").
func ingressAddresses(ing *networkingv1.Ingress) string {
	var out []string
	for _, a := range ing.Status.LoadBalancer.Ingress {
		if s := cmp.Or(a.IP, a.Hostname); s != "" {
			out = append(out, s)
		}
	}
	return orNone(out)
}

// ingressControllerSteps say which controller should serve the class,
// how a person finds out why it does not, and the ways out.
func ingressControllerSteps(in planInput, b *builder, t *ingressRead) []events.Step {
	ing, ref := t.Ingress, in.Owner.ref()
	cluster := func(title string, kubectl ...string) events.Step {
		return b.onOwner(events.Step{Action: events.ActionDiagnostic, Title: title, Risk: events.RiskNone, Kubectl: clusterCommand(kubectl...)})
	}
	className, controller := derefOr(ing.Spec.IngressClassName, ""), "(not read)"
	if c := t.ingressClassOf(ing); c != nil {
		className, controller = c.Name, cmp.Or(c.Spec.Controller, "(none)")
	}
	known, isKnown := knownIngressControllers[controller]
	// Cluster text (names, the controller string, addresses) is quoted.
	className, controller = quote(className), quote(controller)
	out := []events.Step{
		cluster(fmt.Sprintf("%s has no address (status.loadBalancer: %s), and no Ingress of IngressClass %s has one: the controller the class names, %s, writes it once it serves them, so it does not seem to run. Compare the addresses of every Ingress by class",
			ref, quote(ingressAddresses(ing)), className, controller),
			"get", "ingress", "--all-namespaces", "-o",
			"custom-columns=NAMESPACE:.metadata.namespace,NAME:.metadata.name,CLASS:.spec.ingressClassName,ADDRESS:.status.loadBalancer.ingress[*].ip,HOSTNAME:.status.loadBalancer.ingress[*].hostname"),
	}
	if isKnown {
		out = append(out, cluster(fmt.Sprintf("Find the pods of controller %s (namespace %s as its chart installs it) and why they do not run: kubectl describe, then kubectl logs", controller, known.namespace),
			"get", "pods", "-n", known.namespace, "-l", known.selector, "-o", "wide"))
	} else {
		out = append(out, cluster(fmt.Sprintf("Find the pods of controller %s (its Deployment or DaemonSet, often in a namespace named after it) and why they do not run: kubectl describe, then kubectl logs", controller),
			"get", "pods", "--all-namespaces", "-o", "wide"))
	}
	return append(out, cluster(fmt.Sprintf("Install or repair the controller of IngressClass %s, or set spec.ingressClassName of %s to a class whose controller runs (kubectl edit ingress): by hand, kaar does not change Ingresses. If the controller runs but does not publish addresses (ingress-nginx with --update-status=false, no published Service), the Ingress may be served all the same: send it a request, and raise watcher.ingress_grace or ignore this incident",
		className, ref), "get", "ingressclasses", "-o", "custom-columns=NAME:.metadata.name,CONTROLLER:.spec.controller"))
}

// ingressControllerEvidence quotes the class's controller and the
// Ingress's addresses.
func ingressControllerEvidence(t *ingressRead) []string {
	ing := t.Ingress
	lines := []string{quote(fmt.Sprintf("ingress/%s addresses: %s", ing.Name, ingressAddresses(ing)))}
	if c := t.ingressClassOf(ing); c != nil {
		lines = append(lines, quote(fmt.Sprintf("ingressclass/%s controller %s", c.Name, cmp.Or(c.Spec.Controller, "(none)"))))
	}
	return lines
}
