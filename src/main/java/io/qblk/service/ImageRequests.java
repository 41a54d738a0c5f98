package io.qblk.service;

/** Bodies of the {@code /images} endpoints. */
@io.quarkus.runtime.annotations.RegisterForReflection(targets = {ImageRequests.Create.class, ImageRequests.Check.class, ApiException.FieldError.class})
public final class ImageRequests {
    private ImageRequests() {}

    /** {@code POST /images}: size such as "8G" or a byte count; format qcow2 (default) or raw. */
    public record Create(String path, String size, String format, Integer clusterSize) {}

    /** {@code POST /images/check}: repair none (default), leaks or all. */
    public record Check(String path, String repair) {}
}
