package io.qblk.qcow2;

/** The {@code qemu-img bitmap} operations ({@link Qcow2Image#editBitmap}). */
public enum BitmapOp { ADD, REMOVE, CLEAR, ENABLE, DISABLE }
