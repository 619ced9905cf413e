"""The Go builds of the sandbox add-ons, as data (see :mod:`aiconf.sandbox.gobuild`).

Versions were chosen by what the Go module proxy serves *and* the checksum database verifies:

* Kueue v0.19.2 (k8s.io/* v0.36.2, controller-runtime v0.24.1); its scheduler-plugins v0.34.7 pin is served, so no
  stub module is needed.
* KubeRay ray-operator v1.6.2 (k8s.io/* v0.35.0) -- the version Kueue v0.19.2 itself pins. v1.7.0 is refused by the
  proxy (403) and v1.5.2's go.mod is unknown to sum.golang.org (404), so neither is usable without turning checksum
  verification off.
* cluster-autoscaler: refused by the proxy (``@v/list`` and the 1.36.1 pseudo-version both answer 403), so no
  component exists for it; see :mod:`aiconf.sandbox.addons.cluster_autoscaler`.
"""

from __future__ import annotations

from aiconf.sandbox.gobuild import GoComponent

KUEUE_VERSION = "v0.19.2"
KUBERAY_VERSION = "v1.6.2"
GATEWAY_API_VERSION = "v1.6.3"

KUEUE = GoComponent(
    name="kueue",
    module="sigs.k8s.io/kueue",
    version=KUEUE_VERSION,
    packages=("sigs.k8s.io/kueue/cmd/kueue",),
)

#: The operator's ``main`` package cannot be imported, and controller-runtime's default webhook server it uses binds
#: ``:9443`` on every interface with certs under ``$TMPDIR`` (no flag or env changes that). This entry point is
#: upstream's ray-operator v1.6.2 ``main.go`` (Apache-2.0, The KubeRay Authors) condensed to the flag-based path,
#: with the same scheme, cache selectors and reconcilers, plus three flags: ``--webhook-host``,
#: ``--webhook-port`` and ``--webhook-cert-dir``. Log-file options, the config-file path and the deprecated flags
#: are left out. ``ENABLE_WEBHOOKS=true`` still turns the RayCluster validator on, as upstream.
KUBERAY_MAIN_GO = r"""// Sandbox entry point for the KubeRay operator, condensed from
// github.com/ray-project/kuberay/ray-operator@v1.6.2 main.go (Copyright The KubeRay Authors, Apache-2.0).
// Change: the webhook server listens on --webhook-host:--webhook-port (default 127.0.0.1:9443).
package main

import (
	"flag"
	"fmt"
	"os"

	routev1 "github.com/openshift/api/route/v1"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	k8szap "sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	configapi "github.com/ray-project/kuberay/ray-operator/apis/config/v1alpha1"
	rayv1 "github.com/ray-project/kuberay/ray-operator/apis/ray/v1"
	"github.com/ray-project/kuberay/ray-operator/controllers/ray"
	"github.com/ray-project/kuberay/ray-operator/controllers/ray/batchscheduler"
	"github.com/ray-project/kuberay/ray-operator/controllers/ray/metrics"
	"github.com/ray-project/kuberay/ray-operator/controllers/ray/utils"
	"github.com/ray-project/kuberay/ray-operator/pkg/features"
	webhooks "github.com/ray-project/kuberay/ray-operator/pkg/webhooks/v1"
)

var (
	scheme    = runtime.NewScheme()
	setupLog  = ctrl.Log.WithName("setup")
	userAgent = fmt.Sprintf("kuberay-operator/%s", utils.KUBERAY_VERSION)
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(rayv1.AddToScheme(scheme))
	utilruntime.Must(routev1.Install(scheme))
	utilruntime.Must(batchv1.AddToScheme(scheme))
	utilruntime.Must(configapi.AddToScheme(scheme))
}

func main() {
	var metricsAddr, probeAddr, watchNamespace, featureGates, batchScheduler string
	var webhookHost, webhookCertDir string
	var webhookPort, reconcileConcurrency int
	var enableMetrics bool
	flag.StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:8080", "The address the metric endpoint binds to.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", "127.0.0.1:8082", "The address the probe endpoint binds to.")
	flag.StringVar(&watchNamespace, "watch-namespace", "", "Namespace to watch (all when empty).")
	flag.StringVar(&featureGates, "feature-gates", "", "key=value pairs of feature gates.")
	flag.StringVar(&batchScheduler, "batch-scheduler", "", "Batch scheduler name (volcano, yunikorn, kai-scheduler).")
	flag.IntVar(&reconcileConcurrency, "reconcile-concurrency", configapi.DefaultReconcileConcurrency, "max concurrency for reconciling")
	flag.BoolVar(&enableMetrics, "enable-metrics", false, "Enable the emission of control plane metrics.")
	flag.StringVar(&webhookHost, "webhook-host", "127.0.0.1", "The address the webhook server binds to.")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "The port the webhook server listens on.")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "", "Folder with tls.crt and tls.key (controller-runtime's default when empty).")
	opts := k8szap.Options{Development: true}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()

	logger := k8szap.New(k8szap.UseFlagOptions(&opts))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)

	config := configapi.Configuration{
		MetricsAddr:          metricsAddr,
		ProbeAddr:            probeAddr,
		EnableLeaderElection: ptr.To(false),
		ReconcileConcurrency: reconcileConcurrency,
		WatchNamespace:       watchNamespace,
		BatchScheduler:       batchScheduler,
		EnableMetrics:        enableMetrics,
		QPS:                  ptr.To(configapi.DefaultQPS),
		Burst:                ptr.To(configapi.DefaultBurst),
		DeleteRayJobAfterJobFinishes: os.Getenv(utils.DELETE_RAYJOB_CR_AFTER_JOB_FINISHES) == "true",
	}
	exitOnError(configapi.ValidateBatchSchedulerConfig(setupLog, config), "batch scheduler configs validation failed")
	exitOnError(utilfeature.DefaultMutableFeatureGate.Set(featureGates), "Unable to set flag gates for known features")
	features.LogFeatureGates(setupLog)

	options := ctrl.Options{
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{}},
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: config.MetricsAddr},
		HealthProbeBindAddress: config.ProbeAddr,
		LeaderElection:         false,
		WebhookServer:          webhook.NewServer(webhook.Options{Host: webhookHost, Port: webhookPort, CertDir: webhookCertDir}),
	}
	label, err := labels.NewRequirement(utils.KubernetesCreatedByLabelKey, selection.Equals, []string{utils.ComponentName})
	exitOnError(err, "unable to create cache selectors")
	options.Cache.ByObject = map[client.Object]cache.ByObject{&batchv1.Job{}: {Label: labels.NewSelector().Add(*label)}}
	if watchNamespace != "" {
		options.Cache.DefaultNamespaces[watchNamespace] = cache.Config{}
	}

	restConfig := ctrl.GetConfigOrDie()
	restConfig.UserAgent = userAgent
	restConfig.QPS = float32(*config.QPS)
	restConfig.Burst = *config.Burst
	mgr, err := ctrl.NewManager(restConfig, options)
	exitOnError(err, "unable to start manager")
	ctx := ctrl.SetupSignalHandler()

	var rayClusterMetricsManager *metrics.RayClusterMetricsManager
	var rayJobMetricsManager *metrics.RayJobMetricsManager
	var rayServiceMetricsManager *metrics.RayServiceMetricsManager
	if config.EnableMetrics {
		mgrClient := mgr.GetClient()
		rayClusterMetricsManager = metrics.NewRayClusterMetricsManager(ctx, mgrClient)
		rayJobMetricsManager = metrics.NewRayJobMetricsManager(ctx, mgrClient)
		rayServiceMetricsManager = metrics.NewRayServiceMetricsManager(ctx, mgrClient)
		ctrlmetrics.Registry.MustRegister(rayClusterMetricsManager, rayJobMetricsManager, rayServiceMetricsManager)
	}
	batchSchedulerManager, err := batchscheduler.NewSchedulerManager(ctx, config, restConfig, mgr.GetClient())
	exitOnError(err, "unable to create batch scheduler manager")
	batchSchedulerManager.AddToScheme(mgr.GetScheme())

	rayClusterOptions := ray.RayClusterReconcilerOptions{
		HeadSidecarContainers:    config.HeadSidecarContainers,
		WorkerSidecarContainers:  config.WorkerSidecarContainers,
		IsOpenShift:              utils.GetClusterType(),
		RayClusterMetricsManager: rayClusterMetricsManager,
		BatchSchedulerManager:    batchSchedulerManager,
		DefaultContainerEnvs:     config.DefaultContainerEnvs,
	}
	exitOnError(ray.NewReconciler(ctx, mgr, rayClusterOptions).SetupWithManager(mgr, config.ReconcileConcurrency),
		"unable to create controller", "controller", "RayCluster")
	exitOnError(ray.NewRayServiceReconciler(ctx, mgr, config).SetupWithManager(mgr, config.ReconcileConcurrency),
		"unable to create controller", "controller", "RayService")
	rayJobOptions := ray.RayJobReconcilerOptions{
		RayJobMetricsManager:  rayJobMetricsManager,
		BatchSchedulerManager: batchSchedulerManager,
	}
	exitOnError(ray.NewRayJobReconciler(ctx, mgr, rayJobOptions, config).SetupWithManager(mgr, config.ReconcileConcurrency),
		"unable to create controller", "controller", "RayJob")
	if os.Getenv("ENABLE_WEBHOOKS") == "true" {
		exitOnError(webhooks.SetupRayClusterWebhookWithManager(mgr), "unable to create webhook", "webhook", "RayCluster")
	}
	if features.Enabled(features.RayCronJob) {
		exitOnError(ray.NewRayCronJobReconciler(mgr).SetupWithManager(mgr, config.ReconcileConcurrency),
			"unable to create controller", "controller", "RayCronJob")
	}
	exitOnError(mgr.AddHealthzCheck("healthz", healthz.Ping), "unable to set up health check")
	exitOnError(mgr.AddReadyzCheck("readyz", healthz.Ping), "unable to set up ready check")
	setupLog.Info("starting manager")
	exitOnError(mgr.Start(ctx), "problem running manager")
}

func exitOnError(err error, msg string, keysAndValues ...any) {
	if err != nil {
		setupLog.Error(err, msg, keysAndValues...)
		os.Exit(1)
	}
}
"""

KUBERAY = GoComponent(
    name="kuberay",
    module="github.com/ray-project/kuberay/ray-operator",
    version=KUBERAY_VERSION,
    main_go=KUBERAY_MAIN_GO,
    binary_names=("ray-operator",),
)

KARPENTER_VERSION = "v1.14.1"

#: Karpenter's kwok cloud provider (``sigs.k8s.io/karpenter/kwok``), a real node autoscaler that provisions kwok
#: nodes for pending pods. Upstream's ``operator.NewOperator`` binds metrics and health probes to ``:<port>`` on
#: every interface with no way to pass a host; this entry point is upstream's ``kwok/main.go`` plus a condensed
#: ``NewOperator`` and ``setupIndexers`` from ``pkg/operator/operator.go`` (v1.14.1, Apache-2.0, The Kubernetes
#: Authors) that bind ``127.0.0.1``. Profiling handlers and the memory-limit tuning are left out. v1.14.1 is the
#: newest release whose go.mod accepts Go 1.26.8 (v1.14.3 wants 1.26.10, v1.15.0 1.26.9).
KARPENTER_MAIN_GO = r"""// Sandbox entry point for Karpenter's kwok provider, from sigs.k8s.io/karpenter@v1.14.1 kwok/main.go and
// pkg/operator/operator.go (Copyright The Kubernetes Authors, Apache-2.0).
// Change: metrics and health probes bind 127.0.0.1 (upstream: every interface).
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/awslabs/operatorpkg/serrors"
	"github.com/go-logr/zapr"
	"github.com/samber/lo"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kwok "sigs.k8s.io/karpenter/kwok/cloudprovider"
	v1 "sigs.k8s.io/karpenter/pkg/apis/v1"
	"sigs.k8s.io/karpenter/pkg/cloudprovider/overlay"
	"sigs.k8s.io/karpenter/pkg/controllers"
	"sigs.k8s.io/karpenter/pkg/controllers/nodeoverlay"
	"sigs.k8s.io/karpenter/pkg/controllers/state"
	"sigs.k8s.io/karpenter/pkg/events"
	"sigs.k8s.io/karpenter/pkg/operator"
	"sigs.k8s.io/karpenter/pkg/operator/injection"
	"sigs.k8s.io/karpenter/pkg/operator/logging"
	"sigs.k8s.io/karpenter/pkg/operator/options"
)

func newOperator() (context.Context, *operator.Operator) {
	ctx := injection.WithOptionsOrDie(context.Background(), options.Injectables...)
	logger := serrors.NewLogger(zapr.NewLogger(logging.NewLogger(ctx, "controller")))
	log.SetLogger(logger)
	klog.SetLogger(logger)

	config := ctrl.GetConfigOrDie()
	leaderConfig := rest.CopyConfig(config)
	config.QPS = float32(options.FromContext(ctx).KubeClientQPS)
	config.Burst = options.FromContext(ctx).KubeClientBurst
	config.UserAgent = fmt.Sprintf("%s/%s", operator.AppName, operator.Version)
	kubernetesInterface := kubernetes.NewForConfigOrDie(config)

	mgrOpts := ctrl.Options{
		Logger:                        logging.IgnoreDebugEvents(logger),
		LeaderElection:                !options.FromContext(ctx).DisableLeaderElection,
		LeaderElectionID:              options.FromContext(ctx).LeaderElectionName,
		LeaderElectionNamespace:       options.FromContext(ctx).LeaderElectionNamespace,
		LeaderElectionResourceLock:    resourcelock.LeasesResourceLock,
		LeaderElectionReleaseOnCancel: true,
		LeaderElectionConfig:          leaderConfig,
		Metrics:                       server.Options{BindAddress: fmt.Sprintf("127.0.0.1:%d", options.FromContext(ctx).MetricsPort)},
		HealthProbeBindAddress:        fmt.Sprintf("127.0.0.1:%d", options.FromContext(ctx).HealthProbePort),
		BaseContext: func() context.Context {
			ctx := log.IntoContext(context.Background(), logger)
			return injection.WithOptionsOrDie(ctx, options.Injectables...)
		},
		Cache: cache.Options{
			ByObject: map[client.Object]cache.ByObject{
				&coordinationv1.Lease{}: {Field: fields.SelectorFromSet(fields.Set{"metadata.namespace": "kube-node-lease"})},
			},
		},
	}
	mgr, err := ctrl.NewManager(config, mgrOpts)
	mgr = lo.Must(mgr, err, "failed to setup manager")
	setupIndexers(ctx, mgr)
	lo.Must0(mgr.AddReadyzCheck("manager", func(req *http.Request) error {
		return lo.Ternary(mgr.GetCache().WaitForCacheSync(req.Context()), nil, fmt.Errorf("failed to sync caches"))
	}))
	lo.Must0(mgr.AddReadyzCheck("crd", func(_ *http.Request) error {
		for _, obj := range []client.Object{&v1.NodePool{}, &v1.NodeClaim{}} {
			gvk, err := apiutil.GVKForObject(obj, scheme.Scheme)
			if err != nil {
				return err
			}
			if _, err := mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				return err
			}
		}
		return nil
	}))
	lo.Must0(mgr.AddHealthzCheck("healthz", healthz.Ping))
	lo.Must0(mgr.AddReadyzCheck("readyz", healthz.Ping))
	return ctx, &operator.Operator{
		Manager:             mgr,
		KubernetesInterface: kubernetesInterface,
		EventRecorder:       events.NewRecorder(mgr.GetEventRecorderFor(operator.AppName)), //nolint:staticcheck
		Clock:               clock.RealClock{},
		InstanceTypeStore:   nodeoverlay.NewInstanceTypeStore(),
	}
}

func setupIndexers(ctx context.Context, mgr manager.Manager) {
	idx := mgr.GetFieldIndexer()
	lo.Must0(idx.IndexField(ctx, &corev1.Pod{}, "spec.nodeName", func(o client.Object) []string {
		return []string{o.(*corev1.Pod).Spec.NodeName}
	}), "failed to setup pod indexer")
	lo.Must0(idx.IndexField(ctx, &corev1.Node{}, "spec.providerID", func(o client.Object) []string {
		return []string{o.(*corev1.Node).Spec.ProviderID}
	}), "failed to setup node provider id indexer")
	lo.Must0(idx.IndexField(ctx, &storagev1.VolumeAttachment{}, "spec.nodeName", func(o client.Object) []string {
		return []string{o.(*storagev1.VolumeAttachment).Spec.NodeName}
	}), "failed to setup volumeattachment indexer")
	failOpen := func(err error, msg string) {
		noKindMatchError := &meta.NoKindMatchError{}
		if errors.As(err, &noKindMatchError) {
			log.FromContext(ctx).Error(err, msg)
		} else if err != nil {
			panic(fmt.Sprintf("%s, %s", err, msg))
		}
	}
	failOpen(idx.IndexField(ctx, &v1.NodeClaim{}, "status.providerID", func(o client.Object) []string {
		return []string{o.(*v1.NodeClaim).Status.ProviderID}
	}), "failed to setup nodeclaim provider id indexer")
	failOpen(idx.IndexField(ctx, &v1.NodeClaim{}, "spec.nodeClassRef.group", func(o client.Object) []string {
		return []string{o.(*v1.NodeClaim).Spec.NodeClassRef.Group}
	}), "failed to setup nodeclaim nodeclassref apiversion indexer")
	failOpen(idx.IndexField(ctx, &v1.NodeClaim{}, "spec.nodeClassRef.kind", func(o client.Object) []string {
		return []string{o.(*v1.NodeClaim).Spec.NodeClassRef.Kind}
	}), "failed to setup nodeclaim nodeclassref kind indexer")
	failOpen(idx.IndexField(ctx, &v1.NodeClaim{}, "spec.nodeClassRef.name", func(o client.Object) []string {
		return []string{o.(*v1.NodeClaim).Spec.NodeClassRef.Name}
	}), "failed to setup nodeclaim nodeclassref name indexer")
	failOpen(idx.IndexField(ctx, &v1.NodePool{}, "spec.template.spec.nodeClassRef.group", func(o client.Object) []string {
		return []string{o.(*v1.NodePool).Spec.Template.Spec.NodeClassRef.Group}
	}), "failed to setup nodepool nodeclassref apiversion indexer")
	failOpen(idx.IndexField(ctx, &v1.NodePool{}, "spec.template.spec.nodeClassRef.kind", func(o client.Object) []string {
		return []string{o.(*v1.NodePool).Spec.Template.Spec.NodeClassRef.Kind}
	}), "failed to setup nodepool nodeclassref kind indexer")
	failOpen(idx.IndexField(ctx, &v1.NodePool{}, "spec.template.spec.nodeClassRef.name", func(o client.Object) []string {
		return []string{o.(*v1.NodePool).Spec.Template.Spec.NodeClassRef.Name}
	}), "failed to setup nodepool nodeclassref name indexer")
}

func main() {
	ctx, op := newOperator()
	instanceTypes, err := kwok.ConstructInstanceTypes(ctx)
	if err != nil {
		log.FromContext(ctx).Error(err, "failed constructing instance types")
	}
	undecorated := kwok.NewCloudProvider(ctx, op.GetClient(), instanceTypes)
	cloudProvider := overlay.Decorate(undecorated, op.GetClient(), op.InstanceTypeStore)
	clusterState := state.NewCluster(op.Clock, op.GetClient(), cloudProvider)
	op.WithControllers(ctx, controllers.NewControllers(
		ctx, op.Manager, op.Clock, op.GetClient(), op.EventRecorder, cloudProvider, undecorated, clusterState,
		op.InstanceTypeStore,
	)...).Start(ctx)
}
"""

KARPENTER = GoComponent(
    name="karpenter-kwok",
    module="sigs.k8s.io/karpenter",
    version=KARPENTER_VERSION,
    main_go=KARPENTER_MAIN_GO,
    binary_names=("karpenter-kwok",),
)
