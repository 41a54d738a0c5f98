package io.qblk.service;

/** What {@code GET /devices} reports about one device. */
@io.quarkus.runtime.annotations.RegisterForReflection
public record DeviceInfo(String name, String state, String image, String target, FrontendType frontend,
                         String endpoint, java.util.List<String> endpoints, long size, boolean readOnly, int queues, int depth, int inflight,
                         String error, String readOnlyReason) {
}
