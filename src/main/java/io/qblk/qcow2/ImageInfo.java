package io.qblk.qcow2;

/**
 * The fields of {@code qemu-img info --output=json} for a qcow2 image.
 *
 * @param actualSize bytes the image file occupies (file length when the backend cannot tell allocated blocks)
 * @param backingFilename null when the image has no backing file
 * @param backingFormat   null when the header does not name one
 */
public record ImageInfo(long virtualSize, String filename, int clusterSize, String format, long actualSize,
        boolean dirtyFlag, String compat, boolean lazyRefcounts, int refcountBits, boolean corrupt,
        boolean extendedL2, String compressionType, String backingFilename, String backingFormat) {

    public String toJson() {
        StringBuilder b = new StringBuilder("{\n");
        b.append("    \"virtual-size\": ").append(virtualSize).append(",\n");
        b.append("    \"filename\": ").append(Json.quote(filename)).append(",\n");
        b.append("    \"cluster-size\": ").append(clusterSize).append(",\n");
        b.append("    \"format\": ").append(Json.quote(format)).append(",\n");
        b.append("    \"actual-size\": ").append(actualSize).append(",\n");
        if (backingFilename != null) b.append("    \"backing-filename\": ").append(Json.quote(backingFilename)).append(",\n");
        if (backingFormat != null) b.append("    \"backing-filename-format\": ").append(Json.quote(backingFormat)).append(",\n");
        b.append("    \"format-specific\": {\n        \"type\": \"qcow2\",\n        \"data\": {\n");
        b.append("            \"compat\": ").append(Json.quote(compat)).append(",\n");
        b.append("            \"compression-type\": ").append(Json.quote(compressionType)).append(",\n");
        if ("1.1".equals(compat)) {
            b.append("            \"lazy-refcounts\": ").append(lazyRefcounts).append(",\n");
            b.append("            \"refcount-bits\": ").append(refcountBits).append(",\n");
            b.append("            \"corrupt\": ").append(corrupt).append(",\n");
            b.append("            \"extended-l2\": ").append(extendedL2).append("\n");
        } else {
            b.append("            \"refcount-bits\": ").append(refcountBits).append("\n");
        }
        b.append("        }\n    },\n");
        b.append("    \"dirty-flag\": ").append(dirtyFlag).append("\n}");
        return b.toString();
    }
}
