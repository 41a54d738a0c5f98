package io.qblk.qcow2;

import java.util.List;

/**
 * Result of {@link Qcow2Image#check}, with the fields of {@code qemu-img check --output=json}.
 *
 * @param messages one line per problem found (human readable)
 */
public record CheckReport(String filename, String format, long checkErrors, long corruptions, long leaks,
        long leaksFixed, long corruptionsFixed, long imageEndOffset, long totalClusters, long allocatedClusters,
        long fragmentedClusters, long compressedClusters, List<String> messages) {

    /** No corruption, no leak and no check error remain. */
    public boolean clean() {
        return checkErrors == 0 && corruptions == 0 && leaks == 0;
    }

    /** qemu-img check --output=json, same field order; zero counters are left out like qemu does. */
    public String toJson() {
        StringBuilder b = new StringBuilder("{\n");
        field(b, "image-end-offset", imageEndOffset, true);
        field(b, "compressed-clusters", compressedClusters, false);
        field(b, "total-clusters", totalClusters, true);
        field(b, "corruptions-fixed", corruptionsFixed, false);
        field(b, "corruptions", corruptions, false);
        field(b, "check-errors", checkErrors, true);
        field(b, "leaks-fixed", leaksFixed, false);
        field(b, "leaks", leaks, false);
        field(b, "allocated-clusters", allocatedClusters, false);
        b.append("    \"filename\": ").append(Json.quote(filename)).append(",\n");
        b.append("    \"format\": ").append(Json.quote(format));
        if (fragmentedClusters > 0) b.append(",\n    \"fragmented-clusters\": ").append(fragmentedClusters);
        return b.append("\n}").toString();
    }

    private static void field(StringBuilder b, String name, long v, boolean always) {
        if (always || v != 0) b.append("    \"").append(name).append("\": ").append(v).append(",\n");
    }
}
