"""The exact option names of ``torchrun`` (PyTorch 2.13.0) and ``ft_launcher`` (nvidia-resiliency-ext 0.7.0).

Why a list of our own: argparse accepts any unambiguous *prefix* (``--nproc-per-nod``) and the
launchers only run on the cluster, so a typo in ``launcher.extra_args`` would otherwise surface
there, after queueing. Names are exact, both spellings (``--nproc-per-node`` / ``--nproc_per_node``).

Provenance (generated once, embedded so the installed package reads nothing outside itself): every
option in the ``options:`` section of
- ``torchrun-2.13.0.help.txt``: ``torch.distributed.run.get_args_parser()`` (prog ``torchrun``),
  ``print_help()``, PyTorch 2.13.0 CPU build, CPython 3.11, Debian 12;
- ``ft_launcher-nvrx-0.7.0.help.txt``: ``nvidia_resiliency_ext.fault_tolerance.launcher.get_args_parser()``
  (prog ``ft_launcher``) from the 0.7.0 wheel (upstream snapshot ``d8686d9c``).
``*_SWITCHES`` take no value; ``*_VALUED`` take one. 0.7.0 removed ``--ignore-missing-fault-tol-cfg``
and the ``--ft-param-*`` aliases (upstream commit ``80932bf``), so they are absent here on purpose.
"""
from __future__ import annotations

TORCHRUN_SWITCHES: frozenset[str] = frozenset({
    "--help", "--module", "--no-python", "--no_python", "--run-path", "--run_path", "--standalone",
    "--virtual-local-rank", "--virtual_local_rank", "-h", "-m"
})

TORCHRUN_VALUED: frozenset[str] = frozenset({
    "--duplicate-stderr-filters", "--duplicate-stdout-filters", "--duplicate_stderr_filters",
    "--duplicate_stdout_filters", "--event-log-handler", "--event_log_handler", "--local-addr",
    "--local-ranks-filter", "--local_addr", "--local_ranks_filter", "--log-dir", "--log_dir",
    "--logs-specs", "--logs_specs", "--master-addr", "--master-port", "--master_addr",
    "--master_port", "--max-restarts", "--max_restarts", "--monitor-interval", "--monitor_interval",
    "--nnodes", "--node-rank", "--node_rank", "--nproc-per-node", "--nproc_per_node",
    "--numa-binding", "--numa_binding", "--rdzv-backend", "--rdzv-conf", "--rdzv-endpoint",
    "--rdzv-id", "--rdzv_backend", "--rdzv_conf", "--rdzv_endpoint", "--rdzv_id", "--redirects",
    "--role", "--shutdown-timeout", "--shutdown_timeout", "--signals-to-handle",
    "--signals_to_handle", "--start-method", "--start_method", "--tee", "-r", "-t"
})

FT_LAUNCHER_SWITCHES: frozenset[str] = frozenset({
    "--ft-ignore-missing-cfg", "--help", "--module", "--no-python", "--no_python", "--run-path",
    "--run_path", "--standalone", "-h", "-m"
})

FT_LAUNCHER_VALUED: frozenset[str] = frozenset({
    "--ft-attribution-analysis-backend", "--ft-attribution-endpoint", "--ft-attribution-export-url",
    "--ft-attribution-llm-api-key-file", "--ft-attribution-llm-base-url",
    "--ft-attribution-llm-model", "--ft-attribution-log-level", "--ft-attribution-startup-timeout",
    "--ft-attribution-stop-action", "--ft-cfg-path", "--ft-cfg_path",
    "--ft-check-remaining-processes", "--ft-check_remaining_processes",
    "--ft-checkpoint-iteration-file", "--ft-checkpoint_iteration_file", "--ft-cycle-info-dir",
    "--ft-enable-dist-storage-healthcheck", "--ft-enable-log-server", "--ft-enable-nic-healthcheck",
    "--ft-enable-nic-monitor", "--ft-enable_nic_healthcheck", "--ft-enable_nic_monitor",
    "--ft-gpu-memory-poll-interval", "--ft-gpu-memory-reclaim-timeout",
    "--ft-gpu-memory-tolerance-mb", "--ft-gpu_memory_poll_interval",
    "--ft-gpu_memory_reclaim_timeout", "--ft-gpu_memory_tolerance_mb",
    "--ft-initial-rank-heartbeat-timeout", "--ft-initial_rank_heartbeat_timeout",
    "--ft-install-exception-hook", "--ft-install_exception_hook", "--ft-link-down-path-template",
    "--ft-link-state-path-template", "--ft-link_down_path_template",
    "--ft-link_state_path_template", "--ft-log-aggregator-count", "--ft-log-leaf-max-queue-chunks",
    "--ft-log-level", "--ft-log-server-graceful-shutdown-timeout", "--ft-log-server-log-prefix",
    "--ft-log-server-port", "--ft-log_level", "--ft-max-no-progress-cycles",
    "--ft-max_no_progress_cycles", "--ft-min-progress-iterations", "--ft-min_progress_iterations",
    "--ft-no-restart-exit-code", "--ft-node-health-check-endpoint",
    "--ft-node-health-check-interval", "--ft-node_health_check_endpoint",
    "--ft-node_health_check_interval", "--ft-numa-bind-strict", "--ft-numa_bind_strict",
    "--ft-nvrx-logfile", "--ft-pci-topo-file", "--ft-pci_topo_file", "--ft-per-cycle-applog-prefix",
    "--ft-rank-heartbeat-timeout", "--ft-rank-out-of-section-timeout", "--ft-rank-section-timeouts",
    "--ft-rank-termination-signal", "--ft-rank_heartbeat_timeout",
    "--ft-rank_out_of_section_timeout", "--ft-rank_section_timeouts",
    "--ft-rank_termination_signal", "--ft-rdzv-impl", "--ft-rdzv_impl",
    "--ft-restart-check-interval", "--ft-restart-policy", "--ft-restart_check_interval",
    "--ft-restart_policy", "--ft-safety-factor", "--ft-safety_factor", "--ft-segment",
    "--ft-segment-health-check-dir", "--ft-skip-section-response", "--ft-skip_section_response",
    "--ft-storage-health-check-path", "--ft-workload-check-interval",
    "--ft-workload_check_interval", "--ft_attribution_analysis_backend",
    "--ft_attribution_endpoint", "--ft_attribution_export_url", "--ft_attribution_llm_api_key_file",
    "--ft_attribution_llm_base_url", "--ft_attribution_llm_model", "--ft_attribution_log_level",
    "--ft_attribution_startup_timeout", "--ft_attribution_stop_action", "--ft_cycle_info_dir",
    "--ft_enable_dist_storage_healthcheck", "--ft_enable_log_server", "--ft_log_aggregator_count",
    "--ft_log_leaf_max_queue_chunks", "--ft_log_server_graceful_shutdown_timeout",
    "--ft_log_server_log_prefix", "--ft_log_server_port", "--ft_no_restart_exit_code",
    "--ft_nvrx_logfile", "--ft_per_cycle_applog_prefix", "--ft_segment",
    "--ft_segment_health_check_dir", "--ft_storage_health_check_path", "--local-addr",
    "--local-ranks-filter", "--local_addr", "--local_ranks_filter", "--log-dir", "--log_dir",
    "--logs-specs", "--logs_specs", "--master-addr", "--master-port", "--master_addr",
    "--master_port", "--max-restarts", "--max_restarts", "--monitor-interval", "--monitor_interval",
    "--nnodes", "--node-rank", "--node_rank", "--nproc-per-node", "--nproc_per_node",
    "--rdzv-backend", "--rdzv-conf", "--rdzv-endpoint", "--rdzv-id", "--rdzv_backend",
    "--rdzv_conf", "--rdzv_endpoint", "--rdzv_id", "--redirects", "--role", "--start-method",
    "--start_method", "--tee", "--term-timeout", "--term_timeout", "--workers-stop-timeout",
    "--workers_stop_timeout", "-r", "-t"
})

TORCHRUN_FLAGS: frozenset[str] = TORCHRUN_SWITCHES | TORCHRUN_VALUED
FT_LAUNCHER_FLAGS: frozenset[str] = FT_LAUNCHER_SWITCHES | FT_LAUNCHER_VALUED

# Options that NeMo-Run or nvidia-resiliency-ext < 0.5 accepted, with what replaced them.
FT_LAUNCHER_RENAMED: dict[str, str] = {"--ignore-missing-fault-tol-cfg": "--ft-ignore-missing-cfg"}
