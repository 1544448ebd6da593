package planner

import "github.com/kaar-dev/kaar/pkg/events"

// The plan of an Ingress whose class's controller does not seem to run:
// diagnostic (installing or repairing a controller is a person's call).
func init() {
	planCases = append(planCases, planCase{name: "ingress-no-controller-diagnostic", id: 230, workload: "ingress:" + ingressNoController,
		typ: events.IssueIngressUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic},
			diagnosticOnly: true,
			summary:        []string{"IngressUnavailable in ingress/shop (no controller)"},
			fields: []fieldCheck{
				eq("/target/kind", "Ingress"),
				eq("/steps/0/title", "ingress/shop has no address (status.loadBalancer: none), and no Ingress of IngressClass nginx has one: "+
					"the controller the class names, k8s.io/ingress-nginx, writes it once it serves them, so it does not seem to run. Compare the addresses of every Ingress by class"),
				has("/steps/0/kubectl", "kubectl get ingress --all-namespaces -o 'custom-columns=NAMESPACE:.metadata.namespace,NAME:.metadata.name,CLASS:.spec.ingressClassName,ADDRESS:"),
				eq("/steps/0/target/kind", "Ingress"),
				eq("/steps/1/kubectl", "kubectl get pods -n ingress-nginx -l app.kubernetes.io/name=ingress-nginx -o wide"),
				has("/steps/2/title", "Install or repair the controller of IngressClass nginx, or set spec.ingressClassName of ingress/shop"),
				has("/steps/2/title", "--update-status=false"),
				eq("/steps/2/kubectl", "kubectl get ingressclasses -o custom-columns=NAME:.metadata.name,CONTROLLER:.spec.controller"),
				eq("/steps/3/kubectl", "kubectl -n apps describe ingress shop"),
				eq("/evidence/0/lines/2", "ingress/shop addresses: none"),
				eq("/evidence/0/lines/3", "ingressclass/nginx controller k8s.io/ingress-nginx"),
			}}})
}
