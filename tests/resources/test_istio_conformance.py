"""Graylane's analyzers held against Istio's own analyzer test data (conformance table).

Each case names Istio's test data files (copied unchanged into istio_testdata/, see its README), the
istioctl analyzer under test, and the messages Istio's analyzers_test.go expects: (code, origin),
origin being `Kind namespace/name` (`Kind name` when the YAML gives no namespace), compared as a
multiset. Graylane runs all its analyzers at once; each finding names the istioctl analyzer it
mirrors, so only that analyzer's findings are compared. A case where Graylane departs from istioctl on
purpose says so (`graylane`, `why`) and is held to Graylane's documented behaviour instead.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from graylane.resources.finding import Finding
from graylane.resources.load import load_paths
from graylane.resources.validate import validate

DATA = Path(__file__).parent / "istio_testdata"

# istioctl message names (pkg/config/analysis/msg) -> codes
ReferencedResourceNotFound = "IST0101"
ConflictingMeshGatewayVirtualServiceHosts = "IST0109"
VirtualServiceDestinationPortSelectorRequired = "IST0112"
PortNameIsNotUnderNamingConvention = "IST0118"
NoServerCertificateVerificationDestinationLevel = "IST0128"
NoServerCertificateVerificationPortLevel = "IST0129"
VirtualServiceUnreachableRule = "IST0130"
VirtualServiceIneffectiveMatch = "IST0131"
VirtualServiceHostNotFoundInGateway = "IST0132"
ServiceEntryAddressesRequired = "IST0134"
GatewayDuplicateCertificate = "IST0138"
IngressRouteRulesNotAffected = "IST0140"
ConflictingGateways = "IST0145"
ExternalNameServiceTypeInvalidPortName = "IST0150"
GatewayPortNotDefinedOnService = "IST0162"
ReferencedInternalGateway = "IST0165"
DestinationRuleSubsetNotSelectPods = "IST0173"
UnknownDestinationRuleHost = "IST0174"
ConflictingServiceEntryProtocol = "IST0177"

Message = tuple[str, str]


@dataclass(frozen=True)
class Case:
    name: str  # the test case's name in analyzers_test.go
    files: tuple[str, ...]
    analyzer: str
    expected: tuple[Message, ...]  # as analyzers_test.go states it
    graylane: tuple[Message, ...] | None = None  # Graylane's documented output where it departs on purpose
    why: str = field(default="")


HOST_NOT_FOUND_IN_GATEWAY = (
    (VirtualServiceHostNotFoundInGateway, "VirtualService default/testing-service-02-test-01"),
    (VirtualServiceHostNotFoundInGateway, "VirtualService default/testing-service-02-test-02"),
    (VirtualServiceHostNotFoundInGateway, "VirtualService default/testing-service-02-test-03"),
    (VirtualServiceHostNotFoundInGateway, "VirtualService default/testing-service-03-test-04"),
)
CA_CERTIFICATES = "destinationrule.CaCertificateAnalyzer"
SERVICE_ENTRY_ADDRESSES = (
    (ServiceEntryAddressesRequired, "ServiceEntry default/service-entry-test-03"),
    (ServiceEntryAddressesRequired, "ServiceEntry default/service-entry-test-04"),
    (ServiceEntryAddressesRequired, "ServiceEntry default/service-entry-test-07"),
)

CASES = (
    Case("virtualServiceConflictingMeshGatewayHosts", ("virtualservice_conflictingmeshgatewayhosts.yaml",),
         "virtualservice.ConflictingMeshGatewayHostsAnalyzer", (
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService team3/ratings"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService team4/ratings"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService foo/ratings"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService bar/ratings"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService foo/productpage"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService foo/bogus-productpage"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService team2/ratings"))),
    Case("virtualServiceConflictingMeshGatewayHostsWithExportTo",
         ("virtualservice_conflictingmeshgatewayhosts_with_exportto.yaml",),
         "virtualservice.ConflictingMeshGatewayHostsAnalyzer", (
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService foo/productpage"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService bar/productpage"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService foo/productpage-c"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService bar/productpage-c"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService foo/productpage-d"),
             (ConflictingMeshGatewayVirtualServiceHosts, "VirtualService bar/productpage-d"))),
    Case("virtualServiceDestinationHosts", ("virtualservice_destinationhosts.yaml",),
         "virtualservice.DestinationHostAnalyzer", (
             (ReferencedResourceNotFound, "VirtualService default/reviews-bogushost"),
             (ReferencedResourceNotFound, "VirtualService default/reviews-bogushost"),
             (ReferencedResourceNotFound, "VirtualService default/reviews-bookinfo-other"),
             (ReferencedResourceNotFound, "VirtualService default/reviews-mirror-bogushost"),
             (ReferencedResourceNotFound, "VirtualService default/reviews-bogusport"),
             (VirtualServiceDestinationPortSelectorRequired, "VirtualService default/reviews-2port-missing"),
             (ReferencedResourceNotFound, "VirtualService istio-system/cross-namespace-details"),
             (ReferencedResourceNotFound, "VirtualService hello/hello-export-to-bogus"))),
    Case("virtualServiceDestinationRules", ("virtualservice_destinationrules.yaml",),
         "virtualservice.DestinationRuleAnalyzer", (
             (ReferencedResourceNotFound, "VirtualService default/reviews-bogussubset"),
             (ReferencedResourceNotFound, "VirtualService default/reviews-mirror-bogussubset"))),
    Case("virtualServiceGateways", ("virtualservice_gateways.yaml",), "virtualservice.GatewayAnalyzer", (
        (ReferencedResourceNotFound, "VirtualService httpbin-bogus"),
        (VirtualServiceHostNotFoundInGateway, "VirtualService default/cross-test"),
        (VirtualServiceHostNotFoundInGateway, "VirtualService httpbin-bogus"),
        (VirtualServiceHostNotFoundInGateway, "VirtualService httpbin"))),
    Case("virtualServiceKubernetesGateways", ("virtualservice_kubernetes_gateways.yaml",),
         "virtualservice.GatewayAnalyzer", (
             (VirtualServiceHostNotFoundInGateway, "VirtualService default/my-vs-host-mismatch"),)),
    Case("virtualServiceInternalGatewayRef", ("virtualservice_internal_gateway_ref.yaml",),
         "virtualservice.GatewayAnalyzer", ((ReferencedInternalGateway, "VirtualService httpbin"),)),
    Case("dupmatches", ("virtualservice_dupmatches.yaml", "virtualservice_overlappingmatches.yaml"),
         "schema.ValidationAnalyzer.VirtualService", (
             (VirtualServiceUnreachableRule, "VirtualService duplicate-match"),
             (VirtualServiceUnreachableRule, "VirtualService foo/sample-foo-cluster01"),
             (VirtualServiceIneffectiveMatch, "VirtualService almost-duplicate-match"),
             (VirtualServiceIneffectiveMatch, "VirtualService duplicate-match"),
             (VirtualServiceUnreachableRule, "VirtualService duplicate-tcp-match"),
             (VirtualServiceUnreachableRule, "VirtualService duplicate-empty-tcp"),
             (VirtualServiceIneffectiveMatch, "VirtualService almost-duplicate-tcp-match"),
             (VirtualServiceIneffectiveMatch, "VirtualService duplicate-tcp-match"),
             (VirtualServiceUnreachableRule, "VirtualService none/tls-routing"),
             (VirtualServiceIneffectiveMatch, "VirtualService none/tls-routing-almostmatch"),
             (VirtualServiceIneffectiveMatch, "VirtualService none/tls-routing"),
             (VirtualServiceIneffectiveMatch, "VirtualService non-method-get"),
             (VirtualServiceIneffectiveMatch, "VirtualService overlapping-in-single-match"),
             (VirtualServiceIneffectiveMatch, "VirtualService overlapping-in-two-matches"),
             (VirtualServiceIneffectiveMatch, "VirtualService overlapping-mathes-with-different-methods"))),
    Case("host defined in virtualservice not found in the gateway",
         ("virtualservice_host_not_found_gateway.yaml",), "virtualservice.GatewayAnalyzer",
         HOST_NOT_FOUND_IN_GATEWAY),
    Case("host defined in virtualservice not found in the gateway(beta version)",
         ("virtualservice_host_not_found_gateway_beta.yaml",), "virtualservice.GatewayAnalyzer",
         HOST_NOT_FOUND_IN_GATEWAY),
    Case("host defined in virtualservice not found in the gateway with ns",
         ("virtualservice_host_not_found_gateway_with_ns_prefix.yaml",), "virtualservice.GatewayAnalyzer",
         ((VirtualServiceHostNotFoundInGateway, "VirtualService default/testing-service-01-test-01"),)),
    Case("host defined in virtualservice not found in the gateway with ns(beta version)",
         ("virtualservice_host_not_found_gateway_with_ns_prefix_beta.yaml",), "virtualservice.GatewayAnalyzer",
         ((VirtualServiceHostNotFoundInGateway, "VirtualService default/testing-service-01-test-01"),)),
    Case("Route Rule no effect on Ingress", ("virtualservice_route_rule_no_effects_ingress.yaml",),
         "virtualservice.DestinationHostAnalyzer",
         ((IngressRouteRulesNotAffected, "VirtualService default/testing-service-01-test-01"),)),
    Case("DestinationRuleWithFakeHost", ("destinationrule-with-fake-host.yaml",),
         "destinationrule.SubsetSelectPodAnalyzer",
         ((UnknownDestinationRuleHost, "DestinationRule default/fake-host"),)),
    Case("DestinationRuleSubsetsNotSelectPods", ("destinationrule-subsets-not-select-pods.yaml",),
         "destinationrule.SubsetSelectPodAnalyzer",
         ((DestinationRuleSubsetNotSelectPods, "DestinationRule default/subsets-not-select-pods"),),
         graylane=(),
         why="IST0173 is judged only when some workload of the Service's namespace is known (input or live): "
             "a DestinationRule checked without its Deployments would otherwise always fail"),
    Case("DestinationRuleSubsetsWithTopologyLabels", ("destinationrule-subsets-with-topology-labels.yaml",),
         "destinationrule.SubsetSelectPodAnalyzer", ()),
    Case("DestinationRuleEmptyTopologyLabels", ("destinationrule-empty-topology-labels.yaml",),
         "destinationrule.SubsetSelectPodAnalyzer",
         ((DestinationRuleSubsetNotSelectPods, "DestinationRule default/empty-topology-labels"),)),
    Case("portNameNotFollowConvention", ("service-no-port-name.yaml",), "service.PortNameAnalyzer", (
        (PortNameIsNotUnderNamingConvention, "Service my-namespace1/my-service1"),
        (PortNameIsNotUnderNamingConvention, "Service my-namespace1/my-service1"),
        (PortNameIsNotUnderNamingConvention, "Service my-namespace2/my-service2"))),
    Case("namedPort", ("service-port-name.yaml",), "service.PortNameAnalyzer", ()),
    Case("unnamedPortInSystemNamespace", ("service-no-port-name-system-namespace.yaml",), "service.PortNameAnalyzer",
         ()),
    Case("ExternalNameServiceTypeInvalidPortName", ("incorrect-port-name-external-name-service-type.yaml",),
         "service.PortNameAnalyzer", (
             (ExternalNameServiceTypeInvalidPortName, "Service nginx-ns/nginx"),
             (ExternalNameServiceTypeInvalidPortName, "Service nginx-ns2/nginx-svc2"),
             (ExternalNameServiceTypeInvalidPortName, "Service nginx-ns3/nginx-svc3"))),
    Case("ExternalNameServiceTypeValidPortName", ("correct-port-name-external-name-service-type.yaml",),
         "service.PortNameAnalyzer", ()),
    Case("gatewayNoWorkload", ("gateway-no-workload.yaml",), "gateway.IngressGatewayPortAnalyzer",
         ((ReferencedResourceNotFound, "Gateway httpbin-gateway"),)),
    Case("gatewayBadPort", ("gateway-no-port.yaml",), "gateway.IngressGatewayPortAnalyzer",
         ((GatewayPortNotDefinedOnService, "Gateway httpbin-gateway"),)),
    Case("gatewayCorrectPort", ("gateway-correct-port.yaml",), "gateway.IngressGatewayPortAnalyzer", ()),
    Case("gatewayCustomIngressGateway", ("gateway-custom-ingressgateway.yaml",),
         "gateway.IngressGatewayPortAnalyzer", ()),
    Case("gatewayCustomIngressGatewayBadPort", ("gateway-custom-ingressgateway-badport.yaml",),
         "gateway.IngressGatewayPortAnalyzer", ((GatewayPortNotDefinedOnService, "Gateway httpbin-gateway"),)),
    Case("gatewayCustomIngressGatewayBadPortWithoutTarget", ("gateway-custom-ingressgateway-badport-notarget.yaml",),
         "gateway.IngressGatewayPortAnalyzer", ((GatewayPortNotDefinedOnService, "Gateway httpbin-gateway"),)),
    Case("gatewayCustomIngressGatewayTranslation", ("gateway-custom-ingressgateway-translation.yaml",),
         "gateway.IngressGatewayPortAnalyzer", ()),
    Case("gatewayServiceMatchPod", ("gateway-custom-ingressgateway-svcselector.yaml",),
         "gateway.IngressGatewayPortAnalyzer", ((GatewayPortNotDefinedOnService, "Gateway httpbin8002-gateway"),)),
    Case("conflicting gateways detect", ("conflicting-gateways.yaml",), "gateway.ConflictingGatewayAnalyzer",
         ((ConflictingGateways, "Gateway alpha"), (ConflictingGateways, "Gateway beta"))),
    Case("gateways with different port are non-conflicting", ("gateway-different-port.yaml",),
         "gateway.ConflictingGatewayAnalyzer", ()),
    Case("conflicting gateways with multiple port declarations", ("conflicting-gateways-multiple-ports.yaml",),
         "gateway.ConflictingGatewayAnalyzer",
         ((ConflictingGateways, "Gateway alpha"), (ConflictingGateways, "Gateway beta"))),
    Case("conflicting gateways detect by sub selector", ("conflicting-gateways-subSelector.yaml",),
         "gateway.ConflictingGatewayAnalyzer",
         ((ConflictingGateways, "Gateway alpha"), (ConflictingGateways, "Gateway beta"))),
    Case("conflicting gateways detect: no port", ("conflicting-gateways-invalid-port.yaml",),
         "gateway.ConflictingGatewayAnalyzer", ()),
    Case("Analyze conflicting gateway with list type", ("analyze-list-type.yaml",),
         "gateway.ConflictingGatewayAnalyzer", (
             (ConflictingGateways, "Gateway alpha"),
             (ConflictingGateways, "Gateway alpha-l"),
             (ConflictingGateways, "Gateway beta-l"))),
    Case("certificate duplication in Gateway", ("gateway-duplicate-certificate.yaml",), "gateway.CertificateAnalyzer", (
        (GatewayDuplicateCertificate, "Gateway istio-system/gateway-01-test-01"),
        (GatewayDuplicateCertificate, "Gateway istio-system/gateway-02-test-01"),
        (GatewayDuplicateCertificate, "Gateway istio-system/gateway-01-test-02"),
        (GatewayDuplicateCertificate, "Gateway default/gateway-01-test-03"))),
    Case("gatewaySecret", ("gateway-secrets.yaml",), "gateway.SecretAnalyzer", (
        (ReferencedResourceNotFound, "Gateway defaultgateway-bogusCredentialName"),
        (ReferencedResourceNotFound, "Gateway customgateway-wrongnamespace"),
        (ReferencedResourceNotFound, "Gateway bogusgateway")),
         graylane=((ReferencedResourceNotFound, "Gateway defaultgateway-bogusCredentialName"),),
         why="a Gateway selector that matches no pod is reported once, by gateway.IngressGatewayPortAnalyzer "
             "(istioctl's SecretAnalyzer repeats it), and a credentialName is looked for in the Gateway's namespace "
             "and istio-system, where the local mesh reads it, not in the selected pods' namespace"),
    Case("missing Addresses and Protocol in Service Entry", ("serviceentry-missing-addresses-protocol.yaml",),
         "serviceentry.Analyzer", SERVICE_ENTRY_ADDRESSES),
    Case("missing Addresses and Protocol in Service Entry with ISTIO_META_DNS_AUTO_ALLOCATE enabled",
         ("serviceentry-missing-addresses-protocol.yaml",), "serviceentry.Analyzer", (),
         graylane=SERVICE_ENTRY_ADDRESSES,
         why="the case turns on DNS address auto-allocation in a mesh config file; Graylane takes no mesh config"),
    Case("ServiceEntry Addresses Required Lowercase Protocol", ("serviceentry-address-required-lowercase.yaml",),
         "serviceentry.Analyzer", ((ServiceEntryAddressesRequired, "ServiceEntry address-missing-lowercase"),)),
    Case("ServiceEntry Addresses Required Uppercase Protocol", ("serviceentry-address-required-uppercase.yaml",),
         "serviceentry.Analyzer", ((ServiceEntryAddressesRequired, "ServiceEntry address-missing-uppercase"),)),
    Case("ServiceEntry conflicting protocols on same host and port", ("serviceentry-conflicting-protocol.yaml",),
         "serviceentry.ConflictingServiceEntryProtocolAnalyzer", (
             (ConflictingServiceEntryProtocol, "ServiceEntry default/se-http"),
             (ConflictingServiceEntryProtocol, "ServiceEntry default/se-https"))),
    Case("ServiceEntry no conflict same protocol", ("serviceentry-no-conflict-protocol.yaml",),
         "serviceentry.ConflictingServiceEntryProtocolAnalyzer", ()),
    Case("ServiceEntry no conflict non-overlapping exportTo scopes", ("serviceentry-conflicting-exportto.yaml",),
         "serviceentry.ConflictingServiceEntryProtocolAnalyzer", ()),
    Case("destinationrule with no cacert, simple at destinationlevel", ("destinationrule-simple-destination.yaml",),
         CA_CERTIFICATES, ((NoServerCertificateVerificationDestinationLevel, "DestinationRule db-tls"),)),
    Case("destinationrule with no cacert, mutual at destinationlevel", ("destinationrule-mutual-destination.yaml",),
         CA_CERTIFICATES, ((NoServerCertificateVerificationDestinationLevel, "DestinationRule db-mtls"),)),
    Case("destinationrule with no cacert, simple at portlevel", ("destinationrule-simple-port.yaml",),
         CA_CERTIFICATES, ((NoServerCertificateVerificationPortLevel, "DestinationRule db-tls"),)),
    Case("destinationrule with credentialname, simple at destinationlevel, no workloadSelector",
         ("destinationrule-simple-destination-credentialname.yaml",),
         CA_CERTIFICATES, ((NoServerCertificateVerificationDestinationLevel, "DestinationRule db-tls"),)),
    Case("destinationrule with credentialname, simple at destinationlevel, workloadSelector",
         ("destinationrule-simple-destination-credentialname-selector.yaml",), CA_CERTIFICATES, ()),
    Case("destinationrule with credentialname, simple at portlevel, no workloadSelector",
         ("destinationrule-simple-port-credentialname.yaml",),
         CA_CERTIFICATES, ((NoServerCertificateVerificationPortLevel, "DestinationRule db-tls"),)),
    Case("destinationrule with credentialname, simple at portlevel, workloadSelector",
         ("destinationrule-simple-port-credentialname-selector.yaml",), CA_CERTIFICATES, ()),
    Case("destinationrule with no cacert, mutual at portlevel", ("destinationrule-mutual-port.yaml",),
         CA_CERTIFICATES, ((NoServerCertificateVerificationPortLevel, "DestinationRule db-mtls"),)),
    Case("destinationrule with no cacert, mutual at destinationlevel and simple at port level",
         ("destinationrule-compound-simple-mutual.yaml",), CA_CERTIFICATES, (
             (NoServerCertificateVerificationDestinationLevel, "DestinationRule db-mtls"),
             (NoServerCertificateVerificationPortLevel, "DestinationRule db-mtls"))),
    Case("destinationrule with no cacert, simple at destinationlevel and mutual at port level",
         ("destinationrule-compound-mutual-simple.yaml",), CA_CERTIFICATES, (
             (NoServerCertificateVerificationPortLevel, "DestinationRule db-mtls"),
             (NoServerCertificateVerificationDestinationLevel, "DestinationRule db-mtls"))),
    Case("destinationrule with both cacerts", ("destinationrule-with-ca.yaml",), CA_CERTIFICATES, ()),
)


def _origin(finding: Finding) -> str:
    doc = finding.doc
    assert doc is not None
    namespace = doc.metadata.get("namespace")
    return f"{doc.kind} {namespace}/{doc.name}" if namespace else f"{doc.kind} {doc.name}"


def graylane_messages(case: Case) -> list[Message]:
    docs = load_paths([str(DATA / f) for f in case.files])
    return sorted((f.code or "", _origin(f)) for f in validate(docs) if f.analyzer == case.analyzer)


def _diff(want: list[Message], got: list[Message]) -> str:
    lines = difflib.unified_diff([f"{c} {o}" for c, o in want], [f"{c} {o}" for c, o in got],
                                 "expected", "graylane", lineterm="")
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_istio_expectations(case: Case) -> None:
    want = sorted(case.expected if case.graylane is None else case.graylane)
    got = graylane_messages(case)
    assert Counter(got) == Counter(want), f"{case.name} ({case.why or 'as analyzers_test.go'}):\n" + _diff(want, got)


def test_departures_are_few_and_explained() -> None:
    departures = [c for c in CASES if c.graylane is not None]
    assert all(c.why for c in departures)
    assert len(CASES) - len(departures) == 53, "conformance figure changed: update docs/validation.md"
