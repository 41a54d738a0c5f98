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

    public String toJson() {
        StringBuilder b = new StringBuilder("{\n");
        b.append("    \"image-end-offset\": ").append(imageEndOffset).append(",\n");
        b.append("    \"total-clusters\": ").append(totalClusters).append(",\n");
        b.append("    \"check-errors\": ").append(checkErrors).append(",\n");
        if (leaks > 0) b.append("    \"leaks\": ").append(leaks).append(",\n");
        if (corruptions > 0) b.append("    \"corruptions\": ").append(corruptions).append(",\n");
        if (leaksFixed > 0) b.append("    \"leaks-fixed\": ").append(leaksFixed).append(",\n");
        if (corruptionsFixed > 0) b.append("    \"corruptions-fixed\": ").append(corruptionsFixed).append(",\n");
        b.append("    \"allocated-clusters\": ").append(allocatedClusters).append(",\n");
        b.append("    \"filename\": ").append(Json.quote(filename)).append(",\n");
        b.append("    \"format\": ").append(Json.quote(format)).append(",\n");
        b.append("    \"fragmented-clusters\": ").append(fragmentedClusters).append(",\n");
        b.append("    \"compressed-clusters\": ").append(compressedClusters).append("\n}");
        return b.toString();
    }
}
