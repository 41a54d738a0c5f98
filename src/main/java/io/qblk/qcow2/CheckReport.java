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
}
