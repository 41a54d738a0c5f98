package io.qblk.qcow2;

import java.util.List;

/**
 * One persistent dirty bitmap as {@code qemu-img info} lists it in the format-specific data.
 *
 * @param flags qemu's names: "in-use" (inconsistent), "auto" (enabled)
 */
public record BitmapInfo(String name, long granularity, List<String> flags) {
}
