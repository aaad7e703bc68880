//! One's own profile: name, picture and preferences; uploaded pictures
//! stored in PostgreSQL (so every instance serves them); and deleting the
//! account, which leaves a tombstone row behind so history that points at
//! the person still resolves.
//!
//! By concern: [`edit`] (updateProfile and its checks), [`pictures`]
//! (uploaded pictures) and [`deletion`] (deleteAccount and the tombstone
//! staff's deleteUser shares).

mod deletion;
mod edit;
mod pictures;

pub use deletion::{DELETED_USER_NAME, Tombstoned, delete_account, tombstone};
pub use edit::{
    MAX_AVATAR_URL_LEN, MAX_PREFERENCES_BYTES, ProfileUpdate, check_preferences, clean_avatar_url, update_profile,
};
pub use pictures::{AvatarRow, ImageType, MAX_AVATAR_BYTES, find_avatar, store_avatar};
