package io.qblk.service;

/** Body of {@code POST /devices}. Enums and sizes are strings so bad values get field-level messages. */
@io.quarkus.runtime.annotations.RegisterForReflection
public record DeviceRequest(String name, String image, String target, String frontend, Integer queues, Integer depth,
                            Boolean readOnly, String nbdAddress, String createSize, String cache) {
    DeviceSpecs.Draft draft() {
        return new DeviceSpecs.Draft(name, image, target, frontend, queues, depth, readOnly, nbdAddress, createSize, cache);
    }
}
